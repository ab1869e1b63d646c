"""``python inject.py FAULT snnprune-args...``: the command line with one fault injected.

FAULT is one of
  ``none``            no fault;
  ``step:K``          SIGKILL inside training step K (1-based, counted over this process): after the
                      forward, before the backward and the optimizer step;
  ``write:N``         SIGKILL in the middle of the N-th checkpoint write: half of the file is in the
                      temporary file, the rename has not happened;
  ``rename:N``        SIGKILL after the N-th checkpoint is whole in its temporary file (fsynced), just
                      before the rename;
  ``signal:K:NAME``   this process sends itself SIGNAME (INT or TERM) in training step K, as a
                      user's Ctrl-C or a cluster's scheduler would;
  ``stop:K``          SIGSTOP in training step K: a process that hangs (its peers wait on it).
"""

from __future__ import annotations

import io
import os
import signal
import sys


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(fault: str) -> None:
    from snnprune.engine import trainer
    from snnprune.runs import checkpoint

    kind, *args = fault.split(":")
    if kind == "none":
        return
    if kind in ("step", "signal", "stop"):
        target, original, count = int(args[0]), trainer.forward, [0]

        def forward(net, *a, **k):
            out = original(net, *a, **k)
            if net.training:
                count[0] += 1
                if count[0] == target:
                    if kind == "step":
                        _die()
                    elif kind == "stop":
                        os.kill(os.getpid(), signal.SIGSTOP)
                    else:
                        os.kill(os.getpid(), getattr(signal, "SIG" + args[1]))
            return out

        trainer.forward = forward
    elif kind in ("write", "rename"):
        target, original_write, original_replace, count = int(args[0]), checkpoint.atomic_write, os.replace, [0]

        def atomic_write(path, write):
            count[0] += 1
            if count[0] != target:
                return original_write(path, write)

            def half(f):
                buffer = io.BytesIO()
                write(buffer)
                data = buffer.getvalue()
                if kind == "write":
                    f.write(data[: len(data) // 2])
                    f.flush()
                    os.fsync(f.fileno())
                    _die()
                f.write(data)

            def replace(src, dst):
                _die()

            if kind == "rename":
                os.replace = replace
            try:
                return original_write(path, half)
            finally:
                os.replace = original_replace

        checkpoint.atomic_write = atomic_write
    else:
        raise SystemExit(f"inject.py: unknown fault {fault!r}")


if __name__ == "__main__":
    install(sys.argv[1])
    from snnprune.cli import main

    sys.exit(main(sys.argv[2:]))
