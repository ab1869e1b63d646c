"""The plain-loop benchmark's quick path trains with the Pruner's defaults and reports accuracy."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_plain99_quick_path_reaches_the_target_and_writes_results(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import plain99
    finally:
        sys.path.remove(str(ROOT / "bench"))
    assert plain99.main(["--quick", "--out", str(tmp_path)]) == 0
    assert "ann: mean accuracy" in capsys.readouterr().out
    result = json.loads((tmp_path / "plain99.json").read_text())
    run = result["runs"][0]
    assert abs(run["sparsity"] - 0.99) < 0.001 and run["reach_step"] == round(0.75 * run["total_steps"])
    assert "python bench/plain99.py --quick" in result["command"] and result["machine"]
