"""Device targets: what works in this process, selection before the runtime starts, clear errors after."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from mindspore import device_context

from ms_notebook.runs.devices import DeviceError, available_devices, select_device


def test_cpu_is_always_available_and_others_follow_mindspore_detection():
    devices = available_devices()
    assert "CPU" in devices
    assert ("GPU" in devices) == device_context.gpu.is_available()
    assert ("Ascend" in devices) == device_context.ascend.is_available()
    assert devices.current in ("CPU", "GPU", "Ascend")


def test_selecting_an_unavailable_or_unknown_device_says_why():
    missing = [t for t in ("GPU", "Ascend") if t not in available_devices()]
    for target in missing:
        with pytest.raises(DeviceError, match=f"{target} is not available"):
            select_device(target)
    with pytest.raises(DeviceError, match="unknown device target 'TPU'"):
        select_device("TPU")


def test_selecting_the_current_device_is_fine():
    assert select_device(available_devices().current) == available_devices().current


def test_runner_refuses_a_device_switch_after_the_runtime_started():
    script = textwrap.dedent("""
        import numpy as np, mindspore as ms
        from mindspore import nn
        from mindspore.dataset import NumpySlicesDataset
        from ms_notebook.runs.curves import LiveCurves
        from ms_notebook.runs.devices import DeviceError
        from ms_notebook.runs.runner import Runner
        x = np.random.rand(64, 4).astype(np.float32); y = (x.sum(1) > 2).astype(np.int32)
        data = lambda: NumpySlicesDataset((x, y), column_names=["x", "y"], shuffle=False).batch(32)
        net = nn.Dense(4, 2)
        runner = Runner(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
                        nn.SGD(net.trainable_params(), 0.1), data, data, curves=LiveCurves(display=False))
        assert runner.actions()["device"]
        runner.select_device("CPU")
        runner.fit(1)
        assert not runner.actions()["device"]
        try:
            runner.select_device("GPU")
        except DeviceError as error:
            print("ERROR:", error)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "GLOG_v": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ERROR:" in result.stdout
    assert "restart the kernel" in result.stdout or "not available" in result.stdout
