"""Blocks from the cell hierarchy on mindcv-shaped networks: the steps train_last(n) and the panel move in."""

from __future__ import annotations

import os

os.environ.setdefault("GLOG_v", "3")

import mindspore as ms
import pytest

from ms_notebook import TransferPlan
from ms_notebook.transfer.blocks import MAX_SHARE, network_blocks
from tests.mindcv_shaped import (
    DenseNetLike,
    InceptionLike,
    MobileNetLike,
    ResNetLike,
    SwinLike,
    ViTLike,
    Wrapped,
)
from tests.transfer_support import SmallNet


def _same(cls) -> dict:
    """A checkpoint (a dict of parameters) of another instance of the network (10 classes)."""
    return {p.name: p for p in cls().get_parameters()}


def _share(plan: TransferPlan) -> float:
    return 100.0 - plan.summary()["percent_frozen"]  # of the parameters that can train


def test_resnet_blocks_are_its_named_layers():
    plan = TransferPlan(ResNetLike(), {})
    assert plan.blocks == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "classifier"]


def test_vit_blocks_split_the_transformer_stack_and_keep_root_parameters_apart():
    plan = TransferPlan(ViTLike(), {})
    assert plan.blocks == ["cls_token", "pos_embed", "patch_embed", "blocks.0", "blocks.1", "blocks.2",
                           "blocks.3", "norm", "head"]
    table = {row["block"]: row for row in plan.block_table()}
    assert all(row["share"] <= 100 * MAX_SHARE for row in table.values())
    assert sum(row["params"] for row in table.values()) == plan.summary()["params_total"]


def test_swin_blocks_follow_the_cells_although_every_stage_is_named_under_0():
    net = SwinLike()
    names = [p.name for p in net.get_parameters()]
    assert sum(n.startswith("0.") for n in names) > len(names) // 2  # the naming mindcv's Swin has
    plan = TransferPlan(net, _same(SwinLike))
    assert plan.blocks == ["patch_embed", "layers.0", "layers.1", "layers.2", "norm", "classifier"]
    stage = next(b for b in plan.block_list if b.path == "layers.1")
    assert stage.names and all(n.startswith("0.blocks.1.") for n in stage.names)
    # a cell path selects the cell's parameters even though their names do not follow it
    plan.freeze("layers.1")
    assert set(plan.frozen) == set(stage.names)
    plan.train_last(3)
    assert {n for b in plan.block_list[-3:] for n in b.names} == set(plan.trainable)


@pytest.mark.parametrize(
    ("cls", "first", "last"),
    [
        (DenseNetLike, "features.conv0", "classifier"),
        (MobileNetLike, "features.0", "classifier"),
    ],
)
def test_everything_under_features_is_split_into_its_stages(cls, first, last):
    plan = TransferPlan(cls(), _same(cls))
    assert plan.blocks[0] == first and plan.blocks[-1] == last
    assert len(plan.blocks) >= 6
    shares = [(_share(plan.train_last(n)), n) for n in range(1, len(plan.blocks) + 1)]
    values = [s for s, _ in shares]
    assert values == sorted(values) and values[-1] == pytest.approx(100.0)
    assert values[1] < 60.0  # the second step is not the whole network (it was 0.2 % -> 100 % before)


def test_a_wrapper_is_looked_through():
    plan = TransferPlan(Wrapped(ResNetLike()), {})
    assert plan.blocks == ["backbone.conv1", "backbone.bn1", "backbone.layer1", "backbone.layer2",
                           "backbone.layer3", "backbone.layer4", "backbone.classifier"]


def test_every_parameter_is_in_exactly_one_block_in_network_order():
    for cls in (ResNetLike, ViTLike, SwinLike, DenseNetLike, MobileNetLike, InceptionLike, SmallNet):
        net = cls()
        blocks = network_blocks(net)
        names = [n for b in blocks for n in b.names]
        assert names == [p.name for p in net.get_parameters()], cls.__name__


def test_train_last_never_freezes_a_reinitialised_auxiliary_head_and_says_so(tmp_path):
    path = str(tmp_path / "inception.ckpt")
    ms.save_checkpoint(InceptionLike(10), path)
    plan = TransferPlan(InceptionLike(5), path)  # aux.fc and classifier change shape: both re-initialised
    assert plan.status["aux.fc.weight"] == "shape_mismatch"
    plan.train_last(1)
    assert {"aux.fc.weight", "aux.fc.bias"} <= set(plan.trainable)
    assert "aux.conv.0.weight" in plan.frozen
    kept = [w for w in plan.warnings() if w.kind == "kept_trainable"]
    assert kept and set(kept[0].names) == {"aux.fc.weight", "aux.fc.bias"}
    assert "aux.fc.weight" in kept[0].message
    assert not [w for w in plan.warnings() if w.kind == "frozen_at_init"]


def test_block_table_says_what_each_block_does():
    plan = TransferPlan(SmallNet(5), _same(SmallNet)).freeze("block1").keep_init("block2")
    rows = {row["block"]: row for row in plan.block_table(lr=slice(1e-4, 1e-2))}
    assert rows["block1"]["training"] == "frozen" and rows["block2"]["training"] == "trainable"
    assert rows["block1"]["reloaded"] == "all" and rows["block2"]["reloaded"] == "none"
    assert rows["head"]["reloaded"] == "none"  # 10 classes in the checkpoint, 5 here
    assert rows["block1"]["lr"] == pytest.approx(1e-4) and rows["head"]["lr"] == pytest.approx(1e-2)
    assert sum(row["share"] for row in rows.values()) == pytest.approx(100.0)
