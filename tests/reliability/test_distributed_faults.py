"""A 2-process gloo run where one process dies (SIGKILL) or hangs (SIGSTOP): the other ends within
the process-group timeout (``SNNPRUNE_DIST_TIMEOUT``) with one line and exit code 4, never a hang,
and (after the death) ``--resume`` on two processes continues from the last checkpoint to the end,
bit for bit on an uninterrupted two-process run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from snnprune.runs import load_checkpoint

HERE = Path(__file__).resolve().parent
TIMEOUT = 8  # seconds a collective waits for a missing process
ARGS = ["train", "digits_ann_lats", "--set", "epochs=3", "--set", "data.limit=64", "--set", "batch_size=16"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(out: Path, faults=("none", "none"), resume=False) -> list[subprocess.Popen]:
    """Two processes of one gloo job, started as torchrun would (its environment), without its agent:
    nothing but the timeout stops a process whose peer is gone."""
    port, procs = free_port(), []
    for rank, fault in enumerate(faults):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank), "SNNPRUNE_DIST_TIMEOUT": str(TIMEOUT)}
        argv = [sys.executable, str(HERE / "inject.py"), fault, *ARGS, "--out", str(out), *(["--resume"] * resume)]
        procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    return procs


def finish(procs, timeout=300) -> list[tuple[int, str]]:
    return [(p.wait(timeout=timeout), p.stderr.read()) for p in procs]


@pytest.fixture(scope="module")
def whole(tmp_path_factory, data_home):
    out = tmp_path_factory.mktemp("dist") / "whole"
    results = finish(launch(out))
    assert [code for code, _ in results] == [0, 0], results[0][1][-2000:]
    return torch.load(out / "final_model.pt", weights_only=True)["model"]


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["step:6", "stop:6"], ids=["dies", "hangs"])  # in epoch 2 (4 steps per epoch)
def test_a_process_that_dies_or_hangs_ends_the_job_in_one_line_and_resume_finishes_it(fault, whole, tmp_path):
    out = tmp_path / "run"
    survivor, victim = launch(out, faults=("none", fault))
    started = time.time()
    try:
        code = survivor.wait(timeout=240)
    finally:
        victim.send_signal(signal.SIGKILL)  # the stopped one (the dead one is gone already)
        victim.wait(timeout=60)
    lines = survivor.stderr.read().strip().splitlines()
    assert code == 4, lines[-5:]
    assert len([x for x in lines if x.startswith("snnprune:")]) == 1 and "Traceback" not in "\n".join(lines)
    message = lines[-1]
    assert "a collective failed" in message and "--resume" in message and str(out / "last.pt") in message
    if fault.startswith("stop"):
        assert "Timed out" in message
    assert time.time() - started < 240
    saved = load_checkpoint(out / "last.pt")
    assert saved["epoch"] == 1 and len(saved["rng"]) == 2  # epoch 1's checkpoint, both processes' random states
    if fault.startswith("stop"):
        return  # the folder is the same as after a death: resumed once, below, to keep the suite short

    results = finish(launch(out, resume=True))
    assert [c for c, _ in results] == [0, 0], results[0][1][-2000:]
    events = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["resume"] for e in events if e["kind"] == "start"] == [False, True]
    assert [e["epoch"] for e in events if e["kind"] == "epoch"] == [1, 2, 3]  # epoch 2 again, from its start
    final = torch.load(out / "final_model.pt", weights_only=True)["model"]
    assert all(torch.equal(final[k], whole[k]) for k in whole)
