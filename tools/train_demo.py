"""Train a bundled demo model: a small Mamba-1 (or, with --arch mamba2, Mamba-2) on the King
James Bible.

The text comes from Debian's bible-kjv package (public domain; `apt-get install bible-kjv`),
nothing is downloaded. Writes config.json, model.safetensors, tokenizer.json, heldout.txt (the last 2 %, never
trained on), calib.txt (for quantization, from the training text) and train_log.txt.

    python tools/train_demo.py -o examples/demo-mamba
    python tools/train_demo.py --arch mamba2 --tokenizer examples/demo-mamba/tokenizer.json \
        -o examples/demo-mamba2
"""
from __future__ import annotations

import argparse
import math
import re
import subprocess
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from edgeq.models import MambaConfig, MambaLM, save_model


def kjv_text() -> str:
    out = subprocess.run(["bible", "gen1:1-rev22:21"], capture_output=True, text=True,
                         check=True).stdout
    lines = []
    for line in out.splitlines():
        line = line.strip()
        if not line or re.fullmatch(r"[0-9A-Za-z ]+ \d+", line):  # chapter headings
            continue
        lines.append(re.sub(r"^\d+\s+", "", line))  # verse numbers
    return "\n".join(lines) + "\n"


def calib_text(train_text: str) -> str:
    """Calibration text for quantization: every 35th line of the training text (all books)."""
    return "\n".join(train_text.splitlines()[::35]) + "\n"


def train_tokenizer(text: str, vocab: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([text], trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--d-model", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arch", choices=("mamba1", "mamba2"), default="mamba1")
    ap.add_argument("--tokenizer", type=Path, help="reuse this tokenizer.json instead of training one")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    text = kjv_text()
    cut = int(len(text) * 0.98)
    cut = text.index("\n", cut) + 1
    train_text, heldout = text[:cut], text[cut:]
    (args.out / "heldout.txt").write_text(heldout)
    (args.out / "calib.txt").write_text(calib_text(train_text))
    if args.tokenizer:
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(str(args.tokenizer))
    else:
        tok = train_tokenizer(train_text, args.vocab)
    tok.save(str(args.out / "tokenizer.json"))
    ids = torch.tensor(tok.encode(train_text).ids)
    held = torch.tensor(tok.encode(heldout).ids)

    # Mamba-2: 2 B/C groups and 12 heads of 32, so per-state-group scales and head clustering
    # have something to do
    extra = dict(arch="mamba2", d_state=32, headdim=32, ngroups=2, chunk_size=64) \
        if args.arch == "mamba2" else {}
    cfg = MambaConfig(d_model=args.d_model, n_layer=args.layers,
                      vocab_size=-(-tok.get_vocab_size() // 8) * 8, **extra)
    model = MambaLM(cfg, ops="reference")
    with torch.no_grad():  # mamba_ssm inits: small tied embedding, dt log-uniform in [1e-3, 0.1]
        torch.nn.init.normal_(model.backbone.embeddings.weight, std=0.02)
        for layer in model.backbone.layers:
            m = layer.mixer
            dt = torch.exp(torch.rand(cfg.nheads) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            (m.dt_bias if cfg.arch == "mamba2" else m.dt_proj.bias).copy_(dt + torch.log(-torch.expm1(-dt)))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps, pct_start=0.05)
    n_params = sum(p.numel() for p in model.parameters())
    log = [f"demo model: {cfg}", f"parameters: {n_params}", f"train tokens: {len(ids)}, "
           f"held-out tokens: {len(held)}, batch {args.batch} x seq {args.seq}, {args.steps} steps"]
    print("\n".join(log), flush=True)

    def loss_on(x):
        logits, _ = model(x[:, :-1])
        return F.cross_entropy(logits.reshape(-1, cfg.vocab_size), x[:, 1:].reshape(-1))

    t0 = time.time()
    for step in range(1, args.steps + 1):
        starts = torch.randint(0, len(ids) - args.seq - 1, (args.batch,))
        x = torch.stack([ids[s:s + args.seq + 1] for s in starts])
        loss = loss_on(x)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == 1:
            line = f"step {step} loss {loss.item():.4f} lr {sched.get_last_lr()[0]:.2e} {time.time() - t0:.0f}s"
            log.append(line)
            print(line, flush=True)
    model.eval()
    with torch.no_grad():
        n = (len(held) - 1) // args.seq
        chunks = held[: n * args.seq + 1]
        x = torch.stack([chunks[i * args.seq: (i + 1) * args.seq + 1] for i in range(n)])
        ppl = math.exp(loss_on(x).item())
    log.append(f"held-out perplexity (seq {args.seq}): {ppl:.2f}")
    print(log[-1])
    save_model(model, args.out)
    (args.out / "train_log.txt").write_text("\n".join(log) + "\n")


if __name__ == "__main__":
    main()
