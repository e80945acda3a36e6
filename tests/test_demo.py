"""The offline demo: DigitsNet, the digits tasks and the cached pretrained checkpoint (real training)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "GLOG_v": "3", "PYTHONPATH": str(ROOT), **extra}
    return env


# ---------------------------------------------------------------- network


def test_digitsnet_has_named_blocks_and_classifies_8x8_images():
    import mindspore as ms

    from ms_notebook.demo import DigitsNet

    net = DigitsNet(num_classes=7, seed=3)
    blocks = [name for name, _ in net.name_cells().items()]
    assert blocks == ["block1", "block2", "block3", "head"]
    names = {p.name: tuple(p.shape) for p in net.get_parameters()}
    assert names["block1.conv.weight"] == (8, 1, 3, 3)
    assert names["block1.bn.moving_mean"] == (8,)
    assert names["block2.conv.weight"] == (16, 8, 3, 3)
    assert names["block3.dense.weight"] == (64, 256)
    assert names["head.weight"] == (7, 64)
    assert names["head.bias"] == (7,)
    net.set_train(False)
    out = net(ms.Tensor(np.zeros((5, 1, 8, 8), np.float32)))
    assert out.shape == (5, 7)


def test_digitsnet_seed_makes_initial_weights_reproducible():
    from ms_notebook.demo import DigitsNet

    a, b, c = DigitsNet(seed=1), DigitsNet(seed=1), DigitsNet(seed=2)
    for (name, pa), (_, pb), (_, _pc) in zip(
        a.parameters_and_names(), b.parameters_and_names(), c.parameters_and_names(), strict=True
    ):
        assert np.array_equal(pa.asnumpy(), pb.asnumpy()), name
    assert not np.array_equal(a.head.weight.asnumpy(), c.head.weight.asnumpy())


def test_digitsnet_rejects_zero_classes():
    from ms_notebook.demo import DigitsNet

    with pytest.raises(ValueError, match="num_classes"):
        DigitsNet(num_classes=0)


# ---------------------------------------------------------------- data


def test_split_is_fixed_disjoint_and_stratified():
    from ms_notebook.demo import arrays

    x_tr, y_tr = arrays("pretrain", "train")
    x_te, y_te = arrays("pretrain", "test")
    assert x_tr.shape[1:] == (1, 8, 8) and x_tr.dtype == np.float32 and y_tr.dtype == np.int32
    assert len(y_tr) + len(y_te) == 1797
    assert x_tr.min() >= 0.0 and x_tr.max() <= 1.0
    train_rows = {row.tobytes() for row in x_tr}
    # The digits set has a few exact duplicate images; almost no test image may also be a train image.
    assert sum(row.tobytes() in train_rows for row in x_te) < 5
    for label in range(10):
        share = (y_te == label).sum() / ((y_te == label).sum() + (y_tr == label).sum())
        assert 0.22 < share < 0.28
    x_again, _ = arrays("pretrain", "train")
    assert np.array_equal(x_tr, x_again)


def test_transfer_task_is_rotated_digits_5_to_9_with_few_shots():
    from ms_notebook.demo import arrays, num_classes

    assert num_classes("pretrain") == 10 and num_classes("transfer") == 5
    x_pre, y_pre = arrays("pretrain", "test")
    x_tr, y_tr = arrays("transfer", "test")
    fives = x_pre[y_pre == 5]
    assert np.array_equal(x_tr[y_tr == 0], np.rot90(fives, k=1, axes=(2, 3)))
    assert sorted(set(y_tr.tolist())) == [0, 1, 2, 3, 4]
    _, y_few = arrays("transfer", "train")
    assert np.bincount(y_few).tolist() == [20] * 5
    _, y_three = arrays("transfer", "train", shots=3)
    assert np.bincount(y_three).tolist() == [3] * 5


def test_bad_task_split_or_shots_is_a_clear_error():
    from ms_notebook.demo import arrays, datasets

    with pytest.raises(ValueError, match="unknown demo task 'mnist'"):
        arrays("mnist")
    with pytest.raises(ValueError, match="split"):
        arrays("pretrain", "val")
    with pytest.raises(ValueError, match="shots"):
        arrays("transfer", "train", shots=0)
    with pytest.raises(ValueError, match="unknown demo task"):
        datasets("nope")


def test_dataset_factories_give_fresh_datasets_usable_by_two_models():
    import mindspore as ms
    from mindspore import nn

    from ms_notebook.demo import DigitsNet, datasets

    train, evaluate = datasets("transfer", batch_size=16)
    first, second = train(), train()
    assert first is not second
    batches = list(first.create_tuple_iterator(num_epochs=1))
    assert [tuple(b[0].shape) for b in batches[:1]] == [(16, 1, 8, 8)]
    assert sum(int(b[1].shape[0]) for b in batches) == 100
    labels_a = np.concatenate([b[1].asnumpy() for b in batches])
    labels_b = np.concatenate([b[1].asnumpy() for b in second.create_tuple_iterator(num_epochs=1)])
    assert np.array_equal(labels_a, labels_b)  # shuffled, but deterministically
    assert not np.array_equal(labels_a, np.sort(labels_a))

    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    results = []
    for _ in range(2):
        net = DigitsNet(5, seed=0)
        model = ms.train.Model(net, loss, metrics={"accuracy"})
        results.append(model.eval(evaluate())["accuracy"])
    assert results[0] == results[1]


# ---------------------------------------------------------------- pretrained checkpoint


def test_cache_dir_follows_ms_notebook_cache_then_xdg(monkeypatch, tmp_path):
    from ms_notebook.demo.pretrained import cache_dir, checkpoint_path

    monkeypatch.delenv("MS_NOTEBOOK_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "ms-notebook"
    monkeypatch.setenv("MS_NOTEBOOK_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    assert checkpoint_path().parent == tmp_path / "mine"


def test_cache_key_changes_with_the_recipe():
    from ms_notebook.demo.pretrained import RECIPE, checkpoint_path, recipe_hash

    assert recipe_hash() == recipe_hash(dict(RECIPE))
    changed = {**RECIPE, "epochs": int(RECIPE["epochs"]) + 1}  # type: ignore[call-overload]
    assert recipe_hash(changed) != recipe_hash()
    assert checkpoint_path(changed) != checkpoint_path()


@pytest.mark.slow
def test_pretraining_is_deterministic_and_saves_network_and_optimizer_state(tmp_path):
    import mindspore as ms

    from ms_notebook.demo.pretrained import train_pretrained

    mode_before = ms.get_context("mode")
    metrics_a = train_pretrained(tmp_path / "a.ckpt", {"epochs": 1})
    metrics_b = train_pretrained(tmp_path / "b.ckpt", {"epochs": 1})
    assert ms.get_context("mode") == mode_before
    assert metrics_a == metrics_b
    assert metrics_a["accuracy"] > 0.5  # ten classes: chance is 0.1
    a = ms.load_checkpoint(str(tmp_path / "a.ckpt"))
    b = ms.load_checkpoint(str(tmp_path / "b.ckpt"))
    assert list(a) == list(b)
    for name in a:
        if name != "task":
            assert np.array_equal(a[name].asnumpy(), b[name].asnumpy()), name
    assert {"moments.head.weight", "moments.block1.conv.weight", "global_step", "learning_rate"} <= set(a)
    assert a["task"] == "pretrain" and int(a["epoch_num"].asnumpy()) == 1
    assert int(a["global_step"].asnumpy()[0]) == int(a["step_num"].asnumpy())
    assert not list(tmp_path.glob(".tmp-*"))  # the temporary file was renamed, nothing left behind


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """The default checkpoint built by the CLI the Makefile calls, in an isolated cache folder."""
    cache = tmp_path_factory.mktemp("cache")
    out = subprocess.run(
        [sys.executable, "-m", "ms_notebook.demo", "prepare"],
        env=_env(MS_NOTEBOOK_CACHE=str(cache)),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    path = Path(out.stdout.strip())
    assert path.parent == cache and path.is_file()
    return path


@pytest.mark.slow
def test_prepare_cli_prints_the_cached_checkpoint_and_reuses_it(prepared):
    mtime = prepared.stat().st_mtime_ns
    out = subprocess.run(
        [sys.executable, "-m", "ms_notebook.demo", "prepare"],
        env=_env(MS_NOTEBOOK_CACHE=str(prepared.parent)),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip() == str(prepared)
    assert "Training" not in out.stderr  # cached: nothing retrained
    assert prepared.stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_pretrained_checkpoint_loads_into_digitsnet_and_classifies_well(prepared):
    import mindspore as ms
    from mindspore import nn

    from ms_notebook.demo import DigitsNet, datasets

    net = DigitsNet()
    params = ms.load_checkpoint(str(prepared))
    net_names = {p.name for p in net.get_parameters()}
    not_loaded, _ = ms.load_param_into_net(net, {k: v for k, v in params.items() if k in net_names})
    assert not_loaded == []
    _, evaluate = datasets("pretrain")
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    model = ms.train.Model(net, loss, metrics={"accuracy"})
    assert model.eval(evaluate())["accuracy"] > 0.93


@pytest.mark.slow
def test_concurrent_prepares_train_once_and_agree(tmp_path):
    code = (
        "import ms_notebook.demo.pretrained as p; p.RECIPE['epochs'] = 1; "
        "print(p.pretrained_checkpoint(verbose=True))"
    )
    env = _env(MS_NOTEBOOK_CACHE=str(tmp_path))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    paths = {out.strip() for out, _ in outs}
    assert len(paths) == 1
    assert sum(err.count("Building the demo checkpoint") for _, err in outs) == 1  # said once, on stderr
    assert sum(err.count("Demo checkpoint ready in") for _, err in outs) == 1
    files = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".ckpt")
    assert files == [Path(paths.pop()).name]


def test_importing_the_demo_package_does_not_import_mindspore():
    code = (
        "import sys, ms_notebook.demo as d; from ms_notebook.demo.__main__ import main; "
        "main(['path']); print('mindspore' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=_env(MS_NOTEBOOK_CACHE="/nonexistent/cache"),
        capture_output=True, text=True, timeout=60, check=True,
    )
    path, imported = out.stdout.split()
    assert path.startswith("/nonexistent/cache/digitsnet-pretrain-") and path.endswith(".ckpt")
    assert imported == "False"
