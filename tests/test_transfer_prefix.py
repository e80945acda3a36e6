"""Names that differ by a consistent prefix (a checkpoint saved inside a wrapper cell), and .safetensors
sources: compare reports the prefix, TransferPlan matches through it, to_code() reproduces both."""

from __future__ import annotations

import os

os.environ.setdefault("GLOG_v", "3")

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from ms_notebook import TransferPlan, compare, open_checkpoint
from ms_notebook.checkpoint.prefix import PrefixMap, detect_prefix
from tests.mindcv_shaped import ResNetLike, Wrapped
from tests.transfer_support import SmallNet, digits, values


@pytest.fixture(scope="module")
def wrapped_ckpt(tmp_path_factory) -> str:
    """A ResNet-like network trained in a wrapper for two steps: ``backbone.*``, ``moments.backbone.*``."""
    ms.set_seed(0)
    net = Wrapped(ResNetLike(10))
    opt = nn.Momentum(net.trainable_params(), learning_rate=0.05, momentum=0.9)
    step = nn.TrainOneStepCell(nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(True, "mean")), opt)
    step.set_train(True)
    x, y = digits(64, 10)
    for i in range(2):
        step(ms.Tensor(x[i * 32:(i + 1) * 32]), ms.Tensor(y[i * 32:(i + 1) * 32]))
    path = str(tmp_path_factory.mktemp("prefix") / "wrapped.ckpt")
    ms.save_checkpoint(step, path)
    return path


def test_compare_reports_a_consistent_prefix_and_matches_through_it(wrapped_ckpt):
    net = ResNetLike(5)
    plain = compare(wrapped_ckpt, net)
    assert plain.counts["matched"] == 0 and plain.counts["missing"] == len(list(net.get_parameters()))
    assert plain.suggested_prefix_map == {"backbone.": ""}
    assert plain.suggested_matches == len(list(net.get_parameters()))
    assert "prefix_map={'backbone.': ''}" in repr(plain) and "consistent prefix" in plain._repr_html_()

    mapped = compare(wrapped_ckpt, net, prefix_map="auto")
    assert mapped.prefix_map == {"backbone.": ""} and mapped.suggested_prefix_map is None
    assert mapped.counts["missing"] == 0 and mapped.counts["unexpected"] == 0
    assert set(mapped.names("shape_mismatch")) == {"classifier.weight", "classifier.bias"}
    row = next(r for r in mapped.rows if r.name == "layer1.0.conv1.weight")
    assert row.status == "matched" and row.ckpt_name == "backbone.layer1.0.conv1.weight"
    assert mapped.ignored and all(not n.startswith("backbone.") for n in mapped.ignored)


def test_the_prefix_is_found_the_other_way_round_too(wrapped_ckpt, tmp_path):
    bare = str(tmp_path / "bare.ckpt")
    ms.save_checkpoint(ResNetLike(10), bare)
    report = compare(bare, Wrapped(ResNetLike(10)))
    assert report.suggested_prefix_map == {"": "backbone."}
    assert compare(bare, Wrapped(ResNetLike(10)), prefix_map={"": "backbone."}).ok


def test_detection_needs_a_prefix_most_names_share():
    names = ["conv.weight", "bn.gamma", "head.weight"]
    assert detect_prefix(names, names) is None
    assert detect_prefix(["a." + n for n in names], names) == {"a.": ""}
    assert detect_prefix(["a.conv.weight", "head.weight"], names) is None  # one name of three is no rule
    mapper = PrefixMap({"backbone.": "", "head.": "head."})
    assert mapper.to_checkpoint("conv.weight") == "backbone.conv.weight"
    assert mapper.to_checkpoint("head.weight") == "head.weight"  # the longer network prefix wins
    assert mapper.to_network("backbone.conv.weight") == "conv.weight"
    with pytest.raises(ValueError, match="two checkpoint prefixes"):
        PrefixMap({"a.": "", "b.": ""})


def test_plan_through_a_prefix_loads_weights_and_optimizer_state_and_to_code_agrees(wrapped_ckpt):
    ck = open_checkpoint(wrapped_ckpt)
    unmapped = TransferPlan(ResNetLike(5), wrapped_ckpt)
    assert unmapped.reloaded == []
    assert [w.kind for w in unmapped.warnings()] == ["prefix"]
    assert "prefix_map={'backbone.': ''}" in unmapped.warnings()[0].message

    def plan_for(net):
        return TransferPlan(net, wrapped_ckpt, prefix_map={"backbone.": ""}).train_last(3)

    ms.set_seed(3)
    applied = ResNetLike(5)
    ms.set_seed(3)
    fresh = ResNetLike(5)
    opt_code = "nn.Momentum(params, learning_rate=0.05, momentum=0.9)"
    report = plan_for(applied).apply(optimizer=lambda params: eval(opt_code, {"nn": nn, "params": params}))
    got = values(applied)
    for name in report.loaded:
        np.testing.assert_array_equal(got[name], ck["backbone." + name], err_msg=name)
    assert "moments.layer4.0.conv1.weight" in report.state_loaded
    state = {p.name: p.asnumpy() for _, p in report.optimizer.parameters_and_names()}
    np.testing.assert_array_equal(
        state["moments.layer4.0.conv1.weight"], ck["moments.backbone.layer4.0.conv1.weight"]
    )

    code = plan_for(ResNetLike(5)).to_code(optimizer=opt_code)
    assert "PREFIX_MAP = {'backbone.': ''}" in code and "ms_notebook" not in code
    namespace = {"net": fresh}
    exec(compile(code, "<to_code>", "exec"), namespace)
    fresh_values = values(fresh)
    for name, value in got.items():
        np.testing.assert_array_equal(fresh_values[name], value, err_msg=name)
    code_state = {p.name: p.asnumpy() for _, p in namespace["optimizer"].parameters_and_names()}
    assert code_state.keys() == state.keys()
    for name in state:
        np.testing.assert_array_equal(code_state[name], state[name], err_msg=name)


def test_to_code_for_a_safetensors_source_passes_the_format(tmp_path):
    src = SmallNet(10)
    path = str(tmp_path / "small.safetensors")
    ms.save_checkpoint(src, path, format="safetensors")
    applied, fresh = SmallNet(5), SmallNet(5)
    plan = TransferPlan(applied, path).freeze_backbone()
    code = plan.to_code()
    assert "format='safetensors'" in code
    plan.apply()
    exec(compile(code, "<to_code>", "exec"), {"net": fresh})
    want = values(applied)
    for name, value in values(fresh).items():
        if not name.startswith("head."):
            np.testing.assert_array_equal(value, want[name], err_msg=name)


def test_compare_finds_the_prefix_without_importing_mindspore(wrapped_ckpt):
    import subprocess
    import sys
    from pathlib import Path

    code = f"""
import sys
sys.modules["mindspore"] = None  # any import of MindSpore fails from here on
from ms_notebook import compare
net = {{"conv1.weight": ((8, 1, 3, 3), "float32"), "bn1.gamma": ((8,), "float32")}}
report = compare({wrapped_ckpt!r}, net, prefix_map="auto")
print(report.prefix_map, report.counts["matched"])
"""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'backbone.': ''} 2"
