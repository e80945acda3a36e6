"""compare(checkpoint, net) against what mindspore.load_param_into_net really does on real networks and
files."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("GLOG_v", "3")
import mindspore as ms
from mindspore import nn

from ms_notebook.checkpoint import open_checkpoint
from ms_notebook.checkpoint.compare import compare


class SmallCNN(nn.Cell):
    """A multi-layer network shaped like the demo's DigitsNet: conv blocks, a dense block and a head."""

    def __init__(self, num_classes: int = 10, adapter: bool = False) -> None:
        super().__init__()
        self.block1 = nn.SequentialCell([nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU()])
        self.block2 = nn.SequentialCell(
            [nn.Conv2d(8, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2, 2)]
        )
        self.flatten = nn.Flatten()
        self.block3 = nn.Dense(16 * 4 * 4, 32)
        self.adapter = nn.Dense(32, 32) if adapter else None
        self.head = nn.Dense(32, num_classes)

    def construct(self, x):
        x = self.block3(self.flatten(self.block2(self.block1(x))))
        if self.adapter is not None:
            x = self.adapter(x)
        return self.head(x)


def train_steps(net: nn.Cell, steps: int = 3, params=None, seed: int = 0) -> nn.Cell:
    """A few real Momentum steps on random 8×8 images; returns the TrainOneStepCell (with optimizer state)."""
    rng = np.random.default_rng(seed)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    opt = nn.Momentum(
        params if params is not None else net.trainable_params(), learning_rate=0.1, momentum=0.9
    )
    step = nn.TrainOneStepCell(nn.WithLossCell(net, loss), opt)
    step.set_train()
    for _ in range(steps):
        x = ms.Tensor(rng.normal(size=(16, 1, 8, 8)).astype(np.float32))
        y = ms.Tensor(rng.integers(0, 10, size=16).astype(np.int32))
        step(x, y)
    return step


def _load(net: nn.Cell, path) -> tuple[list[str], list[str]]:
    return ms.load_param_into_net(net, ms.load_checkpoint(str(path)))


def test_identical_network_matches_everything_like_load_param_into_net(tmp_path):
    path = tmp_path / "net.ckpt"
    ms.save_checkpoint(SmallCNN(), str(path), append_dict={"epoch_num": 2})
    report = compare(open_checkpoint(path), SmallCNN())
    param_not_load, ckpt_not_load = _load(SmallCNN(), path)
    assert report.names("missing") == param_not_load == []
    assert report.ok and not report.would_raise()
    assert report.counts["matched"] == len(list(SmallCNN().parameters_and_names()))
    # MindSpore lists the appended value as not loaded; we keep it out of "unexpected" as an ignored extra.
    assert ckpt_not_load == ["epoch_num"] and report.ignored == ["epoch_num"]


def test_shape_mismatched_head_is_reported_and_load_param_into_net_raises(tmp_path):
    path = tmp_path / "ten_classes.ckpt"
    ms.save_checkpoint(SmallCNN(10), str(path))
    report = compare(open_checkpoint(path), SmallCNN(5))
    assert report.names("shape_mismatch") == ["head.weight", "head.bias"]
    row = next(r for r in report.rows if r.name == "head.weight")
    assert row.ckpt_shape == (10, 32) and row.net_shape == (5, 32)
    assert report.would_raise()
    with pytest.raises(RuntimeError, match=r"head\.weight"):
        _load(SmallCNN(5), path)
    # Without the mismatched names MindSpore loads the rest, and reports exactly them as not loaded.
    params = ms.load_checkpoint(str(path))
    for name in report.names("shape_mismatch"):
        params.pop(name)
    param_not_load, _ = ms.load_param_into_net(SmallCNN(5), params)
    assert sorted(param_not_load) == sorted(report.names("shape_mismatch"))


def test_missing_and_unexpected_agree_with_load_param_into_net(tmp_path):
    path = tmp_path / "with_adapter.ckpt"
    ms.save_checkpoint(SmallCNN(adapter=True), str(path))
    # checkpoint has adapter.*, the network does not: unexpected
    report = compare(open_checkpoint(path), SmallCNN())
    param_not_load, ckpt_not_load = _load(SmallCNN(), path)
    assert report.names("missing") == param_not_load == []
    assert sorted(report.names("unexpected")) == sorted(ckpt_not_load) == ["adapter.bias", "adapter.weight"]
    # the other way round: the network wants adapter.*, the checkpoint lacks it: missing
    plain = tmp_path / "plain.ckpt"
    ms.save_checkpoint(SmallCNN(), str(plain))
    report = compare(open_checkpoint(plain), SmallCNN(adapter=True))
    param_not_load, ckpt_not_load = _load(SmallCNN(adapter=True), plain)
    assert sorted(report.names("missing")) == sorted(param_not_load) == ["adapter.bias", "adapter.weight"]
    assert report.names("unexpected") == ckpt_not_load == []


def test_optimizer_state_is_never_reported_as_unexpected(tmp_path):
    net = SmallCNN()
    step = train_steps(net)
    path = tmp_path / "trained.ckpt"
    ms.save_checkpoint(step, str(path))
    ck = open_checkpoint(path)
    report = compare(ck, SmallCNN())
    _, ckpt_not_load = _load(SmallCNN(), path)
    optimizer = [e.name for e in ck.entries if e.group == "optimizer"]
    assert any(n.startswith("moments.") for n in optimizer)
    assert set(optimizer) <= set(ckpt_not_load)  # MindSpore's noise...
    assert report.names("unexpected") == []  # ...is not ours
    assert set(report.ignored) == set(ckpt_not_load)
    assert report.names("missing") == []


def test_float16_checkpoint_converts_into_float32_network_like_mindspore(tmp_path):
    net = SmallCNN()
    half = [{"name": p.name, "data": ms.Tensor(p.asnumpy().astype(np.float16))} for p in net.get_parameters()]
    path = tmp_path / "half.ckpt"
    ms.save_checkpoint(half, str(path))
    report = compare(open_checkpoint(path), SmallCNN())
    assert report.counts["dtype_mismatch"] == len(half)
    assert all(r.converts for r in report.rows) and not report.would_raise()
    target = SmallCNN()
    assert _load(target, path)[0] == []  # MindSpore converts silently...
    assert target.head.weight.dtype == ms.float32
    np.testing.assert_allclose(target.head.weight.asnumpy(), net.head.weight.asnumpy(), atol=1e-3)


def test_integer_checkpoint_value_cannot_load_into_float_parameter(tmp_path):
    net = SmallCNN()
    params = [{"name": p.name, "data": p.data} for p in net.get_parameters()]
    params[-1] = {"name": "head.bias", "data": ms.Tensor(np.arange(10, dtype=np.int32))}
    path = tmp_path / "int_bias.ckpt"
    ms.save_checkpoint(params, str(path))
    report = compare(open_checkpoint(path), SmallCNN())
    row = next(r for r in report.rows if r.name == "head.bias")
    assert row.status == "dtype_mismatch" and not row.converts and report.would_raise()
    with pytest.raises(RuntimeError, match=r"head\.bias"):
        _load(SmallCNN(), path)


def test_plain_mapping_describes_a_network(tmp_path):
    path = tmp_path / "net.ckpt"
    ms.save_checkpoint(SmallCNN(), str(path))
    spec = {p.name: (p.shape, p.dtype) for p in SmallCNN(5).get_parameters()}
    spec["head.weight"] = ((5, 32), "float32")  # NumPy-style dtype names are accepted too
    report = compare(path, spec)
    assert report.names("shape_mismatch") == ["head.weight", "head.bias"]
    df = report.to_dataframe()
    assert list(df.columns[:2]) == ["name", "status"] and len(df) == len(spec)


def test_network_without_parameters_is_a_clear_type_error(tmp_path):
    path = tmp_path / "net.ckpt"
    ms.save_checkpoint(SmallCNN(), str(path))
    with pytest.raises(TypeError, match="parameters_and_names"):
        compare(open_checkpoint(path), [1, 2, 3])
