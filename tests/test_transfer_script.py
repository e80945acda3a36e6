"""TransferPlan.to_script: a complete data-parallel training script from a plan (run for real under msrun in
test_launch.py), and the demo data it shards."""

from __future__ import annotations

import ast

import pytest

from ms_notebook import TransferPlan
from ms_notebook.demo import DigitsNet, arrays, dataset, datasets


def _calls(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            names.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return names


def test_script_holds_the_plan_init_data_parallel_shards_and_callbacks(pretrained, tmp_path):
    plan = TransferPlan(DigitsNet(5, seed=1), pretrained).freeze_backbone()
    path = plan.to_script(tmp_path / "train.py", epochs=4, optimizer="nn.Adam(params, 1e-3)")
    text = path.read_text()
    tree = ast.parse(text)
    assert {"init", "set_auto_parallel_context", "set_seed", "load_param_into_net", "LiveCurves",
            "ModelCheckpoint", "fit", "get_rank", "get_group_size"} <= _calls(tree)
    assert "parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True" in text
    assert "num_shards=group_size, shard_id=rank" in text
    assert 'os.path.join(run_dir, f"rank_{rank}")' in text
    # the plan's own code, with its choices: the head is new, the backbone frozen, Adam over the head
    assert plan.to_code(checkpoint=repr(str(tmp_path / "x")), optimizer="nn.Adam(params, 1e-3)").split(
        "FROZEN = [")[1].split("]")[0] in text
    assert "optimizer = nn.Adam(params, 1e-3)" in text
    assert repr(str(pretrained)) in text and "default=4" in text
    assert text.index("init()") < text.index("DigitsNet(") < text.index("train_dataset =")
    assert not list(tmp_path.glob(".tmp-*"))


def test_script_for_another_network_needs_its_code(pretrained, tmp_path):
    from mindspore import nn

    net = nn.SequentialCell(nn.Flatten(), nn.Dense(64, 5))
    plan = TransferPlan(net, pretrained)
    with pytest.raises(ValueError, match="network="):
        plan.to_script(tmp_path / "a.py")
    with pytest.raises(ValueError, match="dataset="):
        plan.to_script(tmp_path / "a.py", network="net = make()")
    path = plan.to_script(tmp_path / "a.py", network="from mynets import make\nnet = make()",
                          dataset="train_dataset = load(rank, group_size)")
    assert "net = make()" in path.read_text() and not (tmp_path / "b.py").exists()


def test_a_plan_over_a_dict_needs_a_checkpoint_path(pretrained, tmp_path):
    import mindspore as ms

    plan = TransferPlan(DigitsNet(5), ms.load_checkpoint(pretrained))
    with pytest.raises(ValueError, match="checkpoint="):
        plan.to_script(tmp_path / "a.py")
    assert repr(pretrained) in plan.to_script(tmp_path / "a.py", checkpoint=pretrained).read_text()
    with pytest.raises(ValueError, match="epochs"):
        plan.to_script(tmp_path / "a.py", checkpoint=pretrained, epochs=0)


def test_demo_shards_are_disjoint_equal_and_cover_the_training_split():
    x, _ = arrays("transfer", "train")  # 100 images

    def shard(n: int, r: int) -> list[bytes]:
        data = dataset("transfer", "train", batch_size=8, num_shards=n, shard_id=r)
        return [image.tobytes() for batch in data.create_dict_iterator(output_numpy=True)
                for image in batch["image"]]

    halves = [shard(2, r) for r in range(2)]
    assert len(halves[0]) == len(halves[1]) == 50
    assert sorted(halves[0] + halves[1]) == sorted(image.tobytes() for image in x)  # a partition
    thirds = [shard(3, r) for r in range(3)]
    assert [len(t) for t in thirds] == [34, 34, 34]  # padded by wrap-around: every rank, the same steps
    assert {image for t in thirds for image in t} == {image.tobytes() for image in x}
    train, evaluate = datasets("transfer", batch_size=8, num_shards=2, shard_id=1)
    assert train().get_dataset_size() < evaluate().get_dataset_size() + 10
    assert evaluate().get_dataset_size() == dataset("transfer", "test", batch_size=8).get_dataset_size()
    with pytest.raises(ValueError, match="shard_id"):
        dataset("transfer", num_shards=2)
    with pytest.raises(ValueError, match="shard_id < num_shards"):
        datasets("transfer", num_shards=2, shard_id=2)
