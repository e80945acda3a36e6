"""The index agrees with mindspore.load_checkpoint, bit for bit, on files MindSpore itself writes."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore import nn  # noqa: E402
from mindspore.train import checkpoint_pb2  # noqa: E402

from ms_notebook.checkpoint import CheckpointError, open_checkpoint  # noqa: E402

# every type save_checkpoint writes and load_checkpoint reads back (complex: see the test below)
LOADABLE = [
    "float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64", "bool_",
]  # fmt: skip


def _param(name: str, dtype, seed: int, shape=(3, 5)) -> ms.Parameter:
    rng = np.random.default_rng(seed)
    data = (rng.standard_normal(shape) * 50).astype(np.float32)
    return ms.Parameter(ms.Tensor(data).astype(dtype), name=name)


def _as_bits(value: np.ndarray) -> np.ndarray:
    """An array's raw bytes as unsigned integers, so NaN payloads and -0.0 compare exactly."""
    value = np.ascontiguousarray(value)
    return value.view(np.uint8).reshape(-1)


def _reference(value) -> np.ndarray | str:
    if isinstance(value, str):
        return value
    if value.dtype == ms.bfloat16:
        return value.asnumpy()  # MindSpore's own bfloat16 numpy dtype
    return value.asnumpy()


def assert_agrees(path, fmt: str) -> None:
    """Same names (order for .ckpt), shapes, dtypes and bytes as load_checkpoint."""
    ours = open_checkpoint(path)
    ref = ms.load_checkpoint(str(path), format=fmt)
    assert ours.format == fmt
    if fmt == "ckpt":
        assert list(ours) == list(ref)
    else:
        assert sorted(ours) == sorted(ref)
    for name, value in ref.items():
        got = ours[name]
        info = ours.info(name)
        if isinstance(value, str):
            assert got == value and info.dtype == "str"
            continue
        expected = _reference(value)
        assert info.dtype == str(value.dtype)
        assert got.shape == expected.shape == info.shape
        assert got.nbytes == info.nbytes
        assert np.array_equal(_as_bits(got), _as_bits(expected)), name


@pytest.fixture(scope="module")
def every_dtype():
    return [
        {"name": f"layer.{t}", "data": _param(f"layer.{t}", getattr(ms, t), i)}
        for i, t in enumerate(LOADABLE)
    ]


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_every_dtype_matches_load_checkpoint(tmp_path, every_dtype, fmt):
    path = tmp_path / f"all.{fmt}"
    ms.save_checkpoint(every_dtype, str(path), format=fmt)
    assert_agrees(path, fmt)
    bf = open_checkpoint(path)["layer.bfloat16"]
    assert bf.dtype == np.dtype(ml_dtypes.bfloat16)


def test_special_float_values_survive_bit_for_bit(tmp_path):
    data = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 3.4e38], dtype=np.float32)
    path = tmp_path / "special.ckpt"
    ms.save_checkpoint([{"name": "x", "data": ms.Tensor(data)}], str(path))
    assert np.array_equal(_as_bits(open_checkpoint(path)["x"]), _as_bits(data))
    assert_agrees(path, "ckpt")


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_complex_tensors_are_read_although_mindspore_cannot_load_them(tmp_path, dtype):
    data = (np.arange(6) + 1j * np.arange(6, 12)).reshape(2, 3).astype(dtype)
    path = tmp_path / "complex.ckpt"
    ms.save_checkpoint([{"name": "z", "data": ms.Tensor(data)}], str(path))
    ck = open_checkpoint(path)
    assert ck.info("z").dtype == dtype.capitalize()
    assert np.array_equal(ck["z"], data) and ck["z"].dtype == np.dtype(dtype)


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_appended_values_are_listed_as_extra_and_read_like_load_checkpoint(tmp_path, fmt):
    net = nn.Dense(3, 2)
    append = {"epoch_num": 7, "step_num": 1200, "best_acc": 0.875}
    if fmt == "ckpt":  # safetensors cannot store strings
        append["note"] = "résumé ✓ 数据"
        append["empty"] = ""
    path = tmp_path / f"appended.{fmt}"
    ms.save_checkpoint(net, str(path), append_dict=append, format=fmt)
    assert_agrees(path, fmt)
    ck = open_checkpoint(path)
    for name in append:
        assert ck.info(name).group == "extra", name
    assert {i.name for i in ck.entries if i.group == "weights"} == {"weight", "bias"}
    assert int(ck["epoch_num"]) == 7 and float(ck["best_acc"]) == pytest.approx(0.875)
    if fmt == "ckpt":
        assert ck["note"] == "résumé ✓ 数据"
        assert ck["empty"] == ""


class _Deep(nn.Cell):
    def __init__(self):
        super().__init__()
        self.features = nn.SequentialCell(
            nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 8, 3), nn.BatchNorm2d(8), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Dense(8, 5)

    def construct(self, x):
        return self.head(self.flatten(self.pool(self.features(x))))


def _train(opt_factory, steps: int = 3):
    ms.set_seed(1)
    net = _Deep()
    opt = opt_factory(net.trainable_params())
    step = nn.TrainOneStepCell(nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True)), opt)
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.standard_normal((4, 1, 8, 8)).astype(np.float32))
    y = ms.Tensor(np.array([0, 1, 2, 3], np.int32))
    for _ in range(steps):
        step(x, y)
    return net, step


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Checkpoints of a multi-layer CNN and of its Momentum and Adam training states after real steps."""
    folder = tmp_path_factory.mktemp("trained")
    paths = {}
    net, momentum_step = _train(lambda p: nn.Momentum(p, 0.1, 0.9))
    for fmt in ("ckpt", "safetensors"):
        paths["net", fmt] = folder / f"net.{fmt}"
        ms.save_checkpoint(net, str(paths["net", fmt]), format=fmt)
        paths["momentum", fmt] = folder / f"momentum.{fmt}"
        ms.save_checkpoint(momentum_step, str(paths["momentum", fmt]), format=fmt)
    _, adam_step = _train(lambda p: nn.Adam(p, 1e-3))
    paths["adam", "ckpt"] = folder / "adam.ckpt"
    ms.save_checkpoint(adam_step, str(paths["adam", "ckpt"]), append_dict={"epoch_num": 1})
    paths["net_names"] = [name for name, _ in net.parameters_and_names()]
    return paths


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_multilayer_network_matches_load_checkpoint(trained, fmt):
    assert_agrees(trained["net", fmt], fmt)
    ck = open_checkpoint(trained["net", fmt])
    assert sorted(ck) == sorted(trained["net_names"])
    assert all(i.group == "weights" for i in ck.entries)


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_momentum_training_state_matches_and_is_grouped(trained, fmt):
    path = trained["momentum", fmt]
    assert_agrees(path, fmt)
    ck = open_checkpoint(path)
    weights = {i.name for i in ck.entries if i.group == "weights"}
    optimizer = {i.name for i in ck.entries if i.group == "optimizer"}
    assert weights == set(trained["net_names"])
    assert {f"moments.{n}" for n in trained["net_names"] if "moving_" not in n} <= optimizer
    assert {"global_step", "learning_rate", "momentum"} <= optimizer
    moments = ck["moments.head.weight"]
    assert np.any(moments != 0)  # real steps happened
    assert ck.num_params == sum(ck.info(n).numel for n in weights)


def test_adam_training_state_matches_and_is_grouped(trained):
    path = trained["adam", "ckpt"]
    assert_agrees(path, "ckpt")
    ck = open_checkpoint(path)
    groups = {i.name: i.group for i in ck.entries}
    assert groups["moment1.head.weight"] == groups["moment2.head.bias"] == "optimizer"
    assert groups["beta1_power"] == groups["beta2_power"] == groups["global_step"] == "optimizer"
    assert groups["epoch_num"] == "extra"
    assert groups["head.weight"] == "weights"


def _entry(name: str, dims, tensor_type: str, content: bytes) -> bytes:
    """One serialized Checkpoint message, made with MindSpore's own protobuf classes."""
    msg = checkpoint_pb2.Checkpoint()
    value = msg.value.add()
    value.tag = name
    value.tensor.dims.extend(dims)
    value.tensor.tensor_type = tensor_type
    value.tensor.tensor_content = content
    return msg.SerializeToString()


def test_tag_split_over_several_entries_is_joined_like_load_checkpoint(tmp_path):
    """MindSpore writes tensors over 512 MiB as consecutive same-tag entries; a small one is built alike."""
    big = np.arange(7 * 11, dtype=np.float32).reshape(7, 11)
    parts = np.array_split(big, 3)
    path = tmp_path / "split.ckpt"
    blob = _entry("before", [2], "Int32", np.array([1, 2], np.int32).tobytes())
    blob += b"".join(_entry("big.weight", [7, 11], "Float32", p.tobytes()) for p in parts)
    blob += _entry("after", [], "Float64", np.float64(2.5).tobytes())
    path.write_bytes(blob)
    assert_agrees(path, "ckpt")
    ck = open_checkpoint(path)
    assert list(ck) == ["before", "big.weight", "after"]
    assert np.array_equal(ck["big.weight"], big)
    stats = ck.stats("big.weight", chunk_elements=5)  # chunks straddle the entry boundaries
    assert stats.mean == pytest.approx(big.mean()) and stats.max == big.max()


def test_split_entries_that_disagree_on_dims_are_rejected(tmp_path):
    path = tmp_path / "bad_split.ckpt"
    path.write_bytes(_entry("w", [2, 2], "Float32", bytes(8)) + _entry("w", [4, 2], "Float32", bytes(8)))
    with pytest.raises(CheckpointError, match=r"bad_split\.ckpt"):
        open_checkpoint(path)


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_crc_checked_files_are_read_and_verified(tmp_path, fmt):
    net = nn.Dense(4, 3)
    path = tmp_path / f"crc.{fmt}"
    ms.save_checkpoint(net, str(path), crc_check=True, append_dict={"epoch_num": 2}, format=fmt)
    ms.load_checkpoint(str(path), crc_check=True, format=fmt)  # MindSpore accepts it
    assert_agrees(path, fmt)
    ck = open_checkpoint(path)
    assert ck.has_crc
    ck.verify()
    assert list(ck) == list(ms.load_checkpoint(str(path), format=fmt)) or fmt == "safetensors"


def test_damaged_crc_checked_file_fails_verification(tmp_path):
    net = nn.Dense(4, 3)
    path = tmp_path / "crc.ckpt"
    ms.save_checkpoint(net, str(path), crc_check=True)
    data = bytearray(path.read_bytes())
    ck = open_checkpoint(path)
    offset, _ = ck._by_name["weight"].spans[0]
    data[offset] ^= 0x01  # one flipped bit inside a tensor: the structure is intact, the crc is not
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ValueError):
        ms.load_checkpoint(str(damaged), crc_check=True)
    with pytest.raises(CheckpointError, match="crc"):
        open_checkpoint(damaged).verify()


def test_file_without_crc_says_so_on_verify(tmp_path):
    path = tmp_path / "plain.ckpt"
    ms.save_checkpoint(nn.Dense(2, 2), str(path))
    ck = open_checkpoint(path)
    assert not ck.has_crc
    with pytest.raises(CheckpointError, match="no crc"):
        ck.verify()


@pytest.mark.parametrize("mode", ["AES-GCM", "AES-CBC"])
def test_encrypted_checkpoint_asks_for_the_key(tmp_path, mode):
    path = tmp_path / "secret.ckpt"
    key = b"0123456789abcdef"
    ms.save_checkpoint(nn.Dense(2, 2), str(path), enc_key=key, enc_mode=mode)
    assert "weight" in ms.load_checkpoint(str(path), dec_key=key, dec_mode=mode)
    with pytest.raises(CheckpointError, match=r"encrypted.*key") as err:
        open_checkpoint(path)
    assert str(path) in str(err.value) and mode in str(err.value)


def test_maptensor_entries_are_listed_with_their_kind_and_reading_says_unsupported(tmp_path):
    """A MapParameter is saved as a maptensor of key/value/status tensors (layout of MindSpore's writer)."""
    keys = np.arange(5, dtype=np.int64)
    values = np.ones((5, 3), np.float32)
    status = np.zeros(5, np.int32)
    msg = checkpoint_pb2.Checkpoint()
    value = msg.value.add()
    value.tag = "embedding.table"
    for array in (keys, values, status):
        tensor = value.maptensor.tensor.add()
        tensor.dims.extend(array.shape)
        tensor.tensor_type = str(array.dtype)
        tensor.tensor_content = array.reshape(-1).tobytes()
    path = tmp_path / "map.ckpt"
    path.write_bytes(_entry("dense.weight", [2], "Float32", bytes(8)) + msg.SerializeToString())
    ck = open_checkpoint(path)
    info = ck.info("embedding.table")
    assert (info.kind, info.shape, info.dtype) == ("maptensor", (5, 3), "float32")
    assert ck.info("dense.weight").kind == "tensor"
    with pytest.raises(CheckpointError, match="not supported"):
        ck["embedding.table"]


@pytest.mark.parametrize(("fmt", "wrong_suffix"), [("ckpt", ".safetensors"), ("safetensors", ".ckpt")])
def test_format_is_detected_from_content_not_extension(tmp_path, fmt, wrong_suffix):
    saved = tmp_path / f"net.{fmt}"
    ms.save_checkpoint(nn.Dense(3, 2), str(saved), format=fmt)
    renamed = tmp_path / f"renamed{wrong_suffix}"
    renamed.write_bytes(saved.read_bytes())
    ck = open_checkpoint(renamed)
    assert ck.format == fmt
    assert np.array_equal(ck["weight"], open_checkpoint(saved)["weight"])
