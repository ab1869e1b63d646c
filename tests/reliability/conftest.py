"""The reliability suite: faults injected into short digits runs (NaN, kill, corrupt files, bad
input, a dead process). Every test here carries the ``reliability`` marker: ``pytest -m reliability``
runs it alone; ``make test`` runs it with the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.reliability)
