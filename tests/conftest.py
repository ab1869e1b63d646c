import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="module")
def data_home(tmp_path_factory):
    """A private ``$SNNPRUNE_DATA`` for one test module (the embedded digits are generated there)."""
    home = tmp_path_factory.mktemp("data_home")
    old = os.environ.get("SNNPRUNE_DATA")
    os.environ["SNNPRUNE_DATA"] = str(home)
    yield home
    if old is None:
        os.environ.pop("SNNPRUNE_DATA", None)
    else:
        os.environ["SNNPRUNE_DATA"] = old


@pytest.fixture
def load_bench():
    """``load_bench("quality")``: a script of ``bench/`` (not a package) imported as the module
    ``bench_quality``, registered in ``sys.modules`` (dataclasses and pickling look it up there)."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module

    return load
