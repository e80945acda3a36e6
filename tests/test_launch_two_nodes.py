"""A two-machine job, simulated on this one as a real one is started: a second "machine" is a network
namespace joined to this one by a veth pair (its own addresses, so msrun there does not start a scheduler),
and ``launch`` runs on each with the same ``master_addr``/``master_port``, one worker each, node_rank 0 and 1,
each with a run folder of its own (no shared filesystem). Rank 0's notebook (this process) watches the curves,
presses Stop, and both ranks stop after one agreed step with their last checkpoints; no process is left on
either machine.

Needs root and iproute2 (``ip netns``); CI runs as root, where both are present.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid

import psutil
import pytest

from ms_notebook import TransferPlan, launch, open_checkpoint
from ms_notebook.demo import DigitsNet
from ms_notebook.runs.launch import STOPPED, processes_with_run_dir

pytestmark = pytest.mark.slow

NODE_SCRIPT = textwrap.dedent("""
    import json, sys
    from ms_notebook import launch
    script, run_dir, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    run = launch(script, workers=1, worker_num=2, node_rank=1, master_addr="10.231.7.1", master_port=port,
                 run_dir=run_dir)
    state = run.wait(timeout=300)
    print(json.dumps({"state": state, "returncodes": {str(k): v for k, v in run.returncodes.items()}}))
""")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def second_machine():
    """A network namespace at 10.231.7.2, reaching this machine at 10.231.7.1 over a veth pair."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("simulating a second machine needs root and iproute2 (ip netns)")
    name = f"msn{uuid.uuid4().hex[:8]}"
    host, peer = f"{name}h"[:15], f"{name}n"[:15]
    _ip("netns", "add", name)
    try:
        _ip("link", "add", host, "type", "veth", "peer", "name", peer, "netns", name)
        _ip("addr", "add", "10.231.7.1/24", "dev", host)
        _ip("link", "set", host, "up")
        _ip("netns", "exec", name, "ip", "addr", "add", "10.231.7.2/24", "dev", peer)
        _ip("netns", "exec", name, "ip", "link", "set", peer, "up")
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "link", "del", host], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def test_rank_0s_notebook_stops_a_two_machine_job_on_both(second_machine, pretrained, tmp_path):
    plan = TransferPlan(DigitsNet(5, seed=1), pretrained).freeze_backbone()
    script = plan.to_script(tmp_path / "train.py", epochs=5000, style="functional")
    port = 18000 + os.getpid() % 2000
    run = launch(script, workers=1, worker_num=2, node_rank=0, master_addr="10.231.7.1", master_port=port,
                 run_dir=tmp_path / "node0")
    other = subprocess.Popen(
        ["ip", "netns", "exec", second_machine, sys.executable, "-c", NODE_SCRIPT, str(script),
         str(tmp_path / "node1"), str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "GLOG_v": "3"},
    )
    try:
        deadline = time.monotonic() + 240
        while (run.history.empty or run.history["step"].iloc[-1] < 16) and time.monotonic() < deadline:
            assert other.poll() is None, f"the second machine's launch ended: {other.communicate()}"
            assert run.state in ("starting", "running"), f"{run.state}: {run.error}\n{run.log(0)[-2000:]}"
            time.sleep(0.5)
        assert run.state == "running", f"{run.error}\n{run.log(0)[-2000:]}"
        run.stop()
        assert run.wait(timeout=120) == STOPPED, f"{run.error}"
        out, err = other.communicate(timeout=120)
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()
    result = json.loads(out.strip().splitlines()[-1])
    assert result["state"] == "stopped" and result["returncodes"] == {"1": 0}, err[-2000:]
    assert run.returncodes == {0: 0}
    # one agreed step on both machines, each rank's last checkpoint in its own machine's run folder
    last0 = open_checkpoint(tmp_path / "node0" / "rank_0" / "last.ckpt")
    last1 = open_checkpoint(tmp_path / "node1" / "rank_1" / "last.ckpt")
    assert int(last0["step"]) == int(last1["step"]) == run.history["step"].iloc[-1]
    assert int(last0["stopped"]) == int(last1["stopped"]) == 1
    # data parallel: the same weights on both machines
    assert all((last0[n] == last1[n]).all() for n in ("head.weight", "head.bias"))
    # no process left on either machine
    for folder in ("node0", "node1"):
        assert not processes_with_run_dir(tmp_path / folder), folder
    left = [p for p in psutil.process_iter(["cmdline"]) if str(script) in " ".join(p.info["cmdline"] or [])]
    assert not left
