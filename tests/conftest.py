import os

import pytest
import torch


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
