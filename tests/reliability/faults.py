"""Helpers of the reliability suite: the command line in this process, a folder's bytes, the wrapper
that runs ``snnprune`` in a subprocess with a fault injected (see ``inject.py``)."""

from __future__ import annotations

from pathlib import Path


def run_main(argv, capsys) -> tuple[int, list[str]]:
    """``snnprune ARGV`` in this process: the exit code and the lines on stderr."""
    from snnprune.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        code = exc.code
    return code, capsys.readouterr().err.strip().splitlines()


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> content)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
