"""The training-step overhead benchmark's quick path runs, in one process and with a process per variant."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("solo", [False, True])
def test_overhead_bench_quick_path_runs(solo):
    cmd = [sys.executable, str(ROOT / "bench" / "overhead.py"), "--quick", "--methods", "ltp,magnitude"]
    if solo:
        cmd.append("--solo")
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("resnet18 {"))
    for kind in ("'dense': 1.0", "'snnprune'", "'torch_prune'", "'naive_param'", "'ltp'", "'magnitude'"):
        assert kind in line
