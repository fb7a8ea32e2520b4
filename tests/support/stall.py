"""Run the edgeq CLI with one place made slow, so that a test's signal lands there:
`python tests/support/stall.py WHERE edgeq-args...`. WHERE is a build stage's name (the stage waits
before it runs), `pyop` (the CPU kernels that ORT's custom ops call wait, inside the PyOp),
`open` (loading a graph into ORT waits) or MODULE:FUNCTION (that function waits). It prints
`stalled at WHERE` on stderr when the wait starts; the test then sends its signal."""
import functools
import sys
import time


def stall(where: str, fn):
    @functools.wraps(fn)
    def slow(*args, **kwargs):
        print(f"stalled at {where}", file=sys.stderr, flush=True)
        time.sleep(120)  # interruptible: the signal's handler runs here, as between kernels
        return fn(*args, **kwargs)
    return slow


def main(where: str, args: list[str]) -> None:
    from edgeq import cli
    from edgeq.bundle import build
    from edgeq.runtime import backends, kernels
    if where == "pyop":
        for op in ("causal_conv1d_int8", "hadamard_int8", "selective_scan_int8",
                   "add_rmsnorm_int8", "causal_conv1d", "selective_scan"):
            setattr(kernels, op, stall(where, getattr(kernels, op)))
    elif where == "open":
        backends.OrtBackend.__init__ = stall(where, backends.OrtBackend.__init__)
    elif ":" in where:
        import importlib
        module, name = where.split(":")
        module = importlib.import_module(module)
        setattr(module, name, stall(where, getattr(module, name)))
    else:
        call = build.Stages.__call__

        def stage(self, name, fn, *a, **k):
            return call(self, name, stall(where, fn) if name == where else fn, *a, **k)
        build.Stages.__call__ = stage
    sys.argv = ["edgeq", *args]
    cli.main()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
