"""How big is the core? Lines of the pruning core at a commit, in all and as code alone.

The core is what every method runs through: ``snnprune/reparam/``, ``snnprune/_ops/``,
``snnprune/control/`` and ``snnprune/pruner.py``. Two counts per file: every line, and the lines
that hold code (not blank, not a comment, not a docstring), because the docstrings are the API
reference the documentation is generated from and grow with it while the code shrinks.

    .venv/bin/python bench/core_size.py                    # HEAD, written to bench/results/core_size.md
    .venv/bin/python bench/core_size.py --against 4f30204  # with a baseline commit beside it
    .venv/bin/python bench/core_size.py --quick            # HEAD only, nothing written
"""

from __future__ import annotations

import argparse
import ast
import io
import subprocess
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ("snnprune/reparam", "snnprune/_ops", "snnprune/control", "snnprune/pruner.py")
SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}


def code_lines(source: str) -> int:
    """The lines of ``source`` that hold a code token outside a docstring."""
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                docstrings.update(range(first.lineno, first.end_lineno + 1))
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in SKIP:
            lines.update(n for n in range(token.start[0], token.end[0] + 1) if n not in docstrings)
    return len(lines)


def count(commit: str) -> dict[str, tuple[int, int]]:
    """``{path: (lines, code lines)}`` of the core's Python files at ``commit``."""
    files = subprocess.run(["git", "ls-tree", "-r", "--name-only", commit, "--", *CORE], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    out = {}
    for path in sorted(f for f in files if f.endswith(".py")):
        source = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout
        out[path] = (len(source.splitlines()), code_lines(source))
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", default="HEAD")
    parser.add_argument("--against", help="a baseline commit to compare with")
    parser.add_argument("--quick", action="store_true", help="count, print, write nothing")
    args = parser.parse_args(argv)
    commits = [args.commit] + ([args.against] if args.against else [])
    names = [subprocess.run(["git", "rev-parse", "--short", c], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip() for c in commits]
    counts = [count(c) for c in commits]
    totals = [(sum(v[0] for v in c.values()), sum(v[1] for v in c.values())) for c in counts]
    rows = [f"| {name} | {lines} | {code} |" for name, (lines, code) in zip(names, totals)]
    md = ["# Size of the pruning core (" + ", ".join(CORE) + ")", "",
          f"Command: `python bench/core_size.py{' --against ' + args.against if args.against else ''}`", "",
          "| commit | lines | code lines (no blank, comment or docstring) |", "|---|---|---|", *rows]
    if args.against:
        (lines, code), (base_lines, base_code) = totals
        md += ["", f"Change: lines {lines / base_lines - 1:+.1%}, code lines {code / base_code - 1:+.1%}."]
    md += ["", f"Files at {names[0]}:", "", "| file | lines | code lines |", "|---|---|---|",
           *[f"| {path} | {a} | {b} |" for path, (a, b) in counts[0].items()]]
    print("\n".join(md))
    if not args.quick:
        (ROOT / "bench" / "results" / "core_size.md").write_text("\n".join(md) + "\n")
    return {"totals": dict(zip(names, totals))}


if __name__ == "__main__":
    main()
