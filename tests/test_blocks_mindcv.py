"""The block rule on real architectures from mindcv 0.3.0 (built with random weights, nothing downloaded):
the blocks a person would name, and train_last(n) moving in useful steps instead of jumping to 100 %."""

from __future__ import annotations

import os

os.environ.setdefault("GLOG_v", "3")

import numpy as np
import pytest

from ms_notebook import TransferPlan

mindcv = pytest.importorskip("mindcv")  # in the test extra; skipped only where someone removed it

pytestmark = pytest.mark.slow


def _plan(arch: str, classes: int = 1000, reshaped: dict[str, tuple[int, ...]] | None = None) -> TransferPlan:
    """A plan for ``arch`` against a "checkpoint" of its own parameters, some with other shapes (a head
    trained for another number of classes); the blocks do not depend on the checkpoint."""
    net = mindcv.create_model(arch, pretrained=False, num_classes=classes)
    checkpoint: dict = {p.name: p for p in net.get_parameters()}
    for name, shape in (reshaped or {}).items():
        checkpoint[name] = np.zeros(shape, np.float32)
    return TransferPlan(net, checkpoint)


def _trainable_share(plan: TransferPlan) -> float:
    return 100.0 - plan.summary()["percent_frozen"]


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ("resnet18", ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "classifier"]),
        ("swin_tiny", ["patch_embed", "layers.0", "layers.1", "layers.2", "layers.3", "norm", "classifier"]),
        ("regnet_x_200mf", ["stem", "stages.0", "stages.1", "stages.2", "stages.3", "head"]),
    ],
)
def test_blocks_of_real_architectures_follow_their_stages(arch, expected):
    plan = _plan(arch)
    assert plan.blocks == expected


@pytest.mark.parametrize("arch", ["mobilenet_v3_large_100", "densenet121"])
def test_train_last_moves_in_useful_steps_on_feature_stacks(arch):
    plan = _plan(arch)
    assert plan.blocks[0].startswith("features.") and len(plan.blocks) >= 10
    shares = [_trainable_share(plan.train_last(n)) for n in range(1, len(plan.blocks) + 1)]
    assert shares == sorted(shares) and shares[-1] == pytest.approx(100.0)
    assert shares[1] < 60.0  # before: the second step was the whole network


def test_inception_train_last_keeps_the_reinitialised_aux_head_trainable():
    plan = _plan("inception_v3", classes=5, reshaped={  # the checkpoint's heads have 1000 classes
        "aux.fc.weight": (1000, 768), "aux.fc.bias": (1000,), "classifier.weight": (1000, 2048),
        "classifier.bias": (1000,)})
    assert plan.status["aux.fc.weight"] == "shape_mismatch"
    plan.train_last(1)
    assert {"aux.fc.weight", "aux.fc.bias"} <= set(plan.trainable)
    assert any(w.kind == "kept_trainable" and "aux.fc.weight" in w.names for w in plan.warnings())
