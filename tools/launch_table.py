"""Write the launch tables of plugins/*/README.md: the kernels each op launches at batch 1 for
Mamba-2.8B and Mamba2-8B widths, decode and a 1024-token prompt, on the Orin Nano (8 SMs) and
an H100 (132 SMs), as the launchers choose them (tests/support/cuda_host_emu.cu's emu_edgeq_launches
calls the launchers' own geometry and dispatch functions on the CPU).

    python tools/launch_table.py          # rewrite the tables (builds the emulation with nvcc)
    python tools/launch_table.py --check  # exit 1 if a committed table is stale

tests/test_launch_table.py runs the check's comparison.
"""
from __future__ import annotations

import argparse
import ctypes
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GPUS = (("Orin Nano", 8), ("H100 SXM", 132))
START, END = "<!-- launch-table:start -->", "<!-- launch-table:end -->"
# Mamba-2.8B: d_model 2560, d_inner 5120, d_state 16, conv width 4; Mamba2-8B: d_model 4096,
# d_inner 8192, 128 heads of 64, d_state 128, 8 groups (conv over x, B, C: 8192 + 2 x 8 x 128)
M1, M2 = "Mamba-2.8B", "Mamba2-8B"
STEPS = (("decode", 1), ("prompt", 1024))
SHAPES = {
    "add_rmsnorm": [(m, s, (L, d)) for m, d in ((M1, 2560), (M2, 4096)) for s, L in STEPS],
    "hadamard": [(m, s, (L, n)) for m, n in ((M1, 5120), (M2, 8192)) for s, L in STEPS],
    "causal_conv1d": [(m, s, (1, L, c, 4)) for m, c in ((M1, 5120), (M2, 10240)) for s, L in STEPS],
    "selective_scan": [(M1, s, (1, L, 5120, 16)) for s, L in (*STEPS, ("prompt", 8))],
    "ssd_scan": [(M2, s, (1, L, 8192, 128, 8, 128)) for s, L in (*STEPS, ("prompt", 64))],
    "linear_w4a8": [(f"{m} {name}", s, (L, K, N, 128))
                    for m, name, K, N in ((M1, "in_proj", 2560, 10240), (M1, "out_proj", 5120, 2560),
                                          (M2, "in_proj", 4096, 18560), (M2, "out_proj", 8192, 4096))
                    for s, L in STEPS],
}
DIMS = {"add_rmsnorm": "rows, d", "hadamard": "rows, n", "causal_conv1d": "batch, L, channels, width",
        "selective_scan": "batch, L, dim, dstate", "ssd_scan": "batch, L, dim, heads, groups, dstate",
        "linear_w4a8": "rows, K, N, group"}


def launches(lib, op: str, dims: tuple, sms: int) -> list[tuple]:
    """(kernel, grid x, grid y, threads, shared bytes) of each launch, in order."""
    out = ctypes.create_string_buffer(4096)
    rc = lib.emu_edgeq_launches(op.encode(), (ctypes.c_int64 * len(dims))(*dims), sms, out, len(out))
    if rc:
        raise SystemExit(f"emu_edgeq_launches({op}, {dims}) failed with status {rc}")
    rows = [line.rsplit(" ", 4) for line in out.value.decode().splitlines()]
    return [(k, int(x), int(y), int(b), int(s)) for k, x, y, b, s in rows]


def table(lib, op: str) -> str:
    lines = [f"Launches at batch 1 (`tools/launch_table.py`, from the launchers' own functions; "
             f"shape: {DIMS[op]}). \"SMs busy\": blocks of the first wave over the SMs.", "",
             "| model | step | shape | GPU | kernel | grid | threads | shared | SMs busy |",
             "|---|---|---|---|---|---|---|---|---|"]
    for model, step, dims in SHAPES[op]:
        for gpu, sms in GPUS:
            for kernel, x, y, block, smem in launches(lib, op, dims, sms):
                busy = f"{min(x * y, sms)}/{sms}"
                shared = f"{smem / 1024:.1f} KiB" if smem else "static"
                lines.append(f"| {model} | {step} | {', '.join(map(str, dims))} | {gpu} | "
                             f"`{kernel}` | {x} x {y} | {block} | {shared} | {busy} |")
    return "\n".join(lines)


def readme(op: str) -> Path:
    return ROOT / "plugins" / op / "README.md"


def updated(text: str, block: str) -> str:
    new = f"{START}\n{block}\n{END}"
    if START in text:
        return re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: new, text, flags=re.S)
    return text.rstrip("\n") + "\n\n" + new + "\n"


def build_lib(folder: Path):
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    import native_build
    if native_build.NVCC is None:
        raise SystemExit("nvcc is not on PATH: the emulation cannot be built")
    lib = folder / "libemu.so"
    native_build.run([native_build.NVCC, "-shared", *native_build.nvcc_host(),
                      native_build.emulation_object(folder), "-o", lib])
    return ctypes.CDLL(str(lib))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a README's table is stale")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lib = build_lib(Path(tmp))
        stale = []
        for op in SHAPES:
            text = readme(op).read_text()
            new = updated(text, table(lib, op))
            if new != text:
                stale.append(op)
                if not args.check:
                    readme(op).write_text(new)
    if args.check and stale:
        print(f"stale launch tables: {', '.join(stale)}; run python tools/launch_table.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
