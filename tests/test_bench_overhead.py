"""The training-step overhead benchmark's quick path runs every kind of variant and reports ratios."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_overhead_bench_quick_path_runs():
    variants = "torch_prune,soft_threshold,ltp@0.8,magnitude,str:reference,str:fast"
    cmd = [sys.executable, str(ROOT / "bench" / "overhead.py"), "--quick", "--variants", variants]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("small {"))
    for kind in ("'dense': 1.0", "'copy'", *(f"'{v}'" for v in variants.split(","))):
        assert kind in line


def test_overhead_bench_names_the_forms_a_variant_may_take():
    cmd = [sys.executable, str(ROOT / "bench" / "overhead.py"), "--quick", "--variants", "str:quick"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert "variant 'str:quick': the form after ':' is 'reference' or 'fast'" in proc.stderr
