"""Checkpoint sets whose names and strategy files carry hostile numbers: each is refused with a
CheckpointError naming the problem, in a child process capped at 2 GB and a timeout (these used to take
unbounded memory or time, or raised IndexError/ValueError from deep inside)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.bounded_child import run_bounded
from tests.ckpt_wire import varint, write_ckpt, write_safetensors

ROW = np.arange(8, dtype=np.float32)


def _open(path: Path, **kwargs: object) -> dict:
    args = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    return run_bounded(
        "from ms_notebook.checkpoint import open_checkpoint\n"
        f"_report(lambda: [e.name for e in open_checkpoint({str(path)!r}{args}).entries])\n"
    )


def _rank_folder(root: Path, ranks: list[int], rows: int = 2) -> Path:
    """Rank folders each holding ``w`` as a ``rows`` x 8 float32 slice (hand-written .ckpt wire format)."""
    for r in ranks:
        (root / f"rank_{r}").mkdir(parents=True)
        data = (np.repeat(ROW[None], rows, 0) + r).astype(np.float32)
        write_ckpt(root / f"rank_{r}" / "net-1_1.ckpt", [("w", [rows, 8], "Float32", data.tobytes())])
    return root


def _layout(dev: list[int], tmap: list, field: int = 0) -> bytes:
    """A ``ParallelLayouts`` message by hand (values a real writer would refuse, e.g. over uint32)."""
    def ints(number: int, values: list[int]) -> bytes:
        body = b"".join(b"\x08" + varint(v) for v in values)
        return bytes([number << 3 | 2]) + varint(len(body)) + body

    nested = any(isinstance(d, list) for d in tmap)
    maps = b"".join(ints(2, d if isinstance(d, list) else [d]) for d in tmap) if nested else ints(2, tmap)
    out = ints(1, dev) + maps
    if field:
        out += b"\x28" + varint(field)
    return out


def _strategy_pb(path: Path, layouts: dict[str, bytes]) -> Path:
    items = []
    for name, layout in layouts.items():
        item = b"\x0a" + varint(len(name.encode())) + name.encode() + b"\x12" + varint(len(layout)) + layout
        items.append(b"\x1a" + varint(len(item)) + item)
    path.write_bytes(b"".join(items))
    return path


def _strategy_json(path: Path, items: dict[str, dict] | str) -> Path:
    text = items if isinstance(items, str) else json.dumps({"parallel_layout_item": items})
    path.write_text(text)
    return path


def _refused(result: dict, *words: str) -> None:
    assert result["outcome"] == "CheckpointError", result
    for word in words:
        assert word in result["message"], result


def test_a_rank_number_beyond_any_real_run_is_refused(tmp_path):
    _rank_folder(tmp_path, [0, 1])
    (tmp_path / "rank_99999999999").mkdir()
    _refused(_open(tmp_path), "rank_99999999999", "rank numbers go up to")


def test_a_far_rank_folder_costs_nothing_for_the_ranks_between(tmp_path):
    _rank_folder(tmp_path, [0, 1_000_000])
    result = _open(tmp_path)
    assert result["outcome"] == "ok" and result["value"] == ["w"], result


def test_a_shard_name_claiming_a_billion_shards_names_the_missing_ones(tmp_path):
    write_safetensors(tmp_path / "model-00001-of-999999999.safetensors", {"w": ("F32", [8], ROW.tobytes())})
    _refused(_open(tmp_path), "model-000000002-of-999999999.safetensors is missing", "999,999,998")


@pytest.mark.parametrize("dev", [[2**31], [2**63 - 1], [1024, 1024, 2], [100_000_000]])
def test_a_device_matrix_over_a_million_devices_is_refused(tmp_path, dev):
    _rank_folder(tmp_path, [0, 1])
    _strategy_pb(tmp_path / "strategy.ckpt", {"w": _layout(dev, [0, -1], field=1 if dev[0] == 10**8 else 0)})
    _refused(_open(tmp_path), "'w'", "more than 1,048,576 devices")


def test_a_strategy_naming_more_devices_than_ranks_is_refused(tmp_path):
    _rank_folder(tmp_path, [0, 1])
    _strategy_pb(tmp_path / "strategy.ckpt", {"w": _layout([1_000_000], [0, -1])})
    _refused(_open(tmp_path), "over 1000000 devices", "only up to rank_1")


@pytest.mark.parametrize("tmap", [[-1, [-1, 1]], [[]], [[0, -1], -1]])
def test_nested_tensor_maps_with_minus_one_or_empty_are_refused(tmp_path, tmap):
    _rank_folder(tmp_path, [0, 1])
    _strategy_json(tmp_path / "strategy.json", {"w": {"dev_matrix": [2, 1], "tensor_map": tmap}})
    _refused(_open(tmp_path), "tensor map of 'w'")


@pytest.mark.parametrize("text", [
    '{"parallel_layout_item": {"w": {"dev_matrix": [1e30], "tensor_map": [0, -1]}}}',
    '{"parallel_layout_item": {"w": {"dev_matrix": [' + "9" * 5000 + '], "tensor_map": [0, -1]}}}',
    '{"parallel_layout_item": {"w": {"dev_matirx": [2], "tensor_map": [0, -1]}}}',
])
def test_malformed_json_strategies_are_refused_with_the_reason(tmp_path, text):
    _rank_folder(tmp_path, [0, 1])
    _strategy_json(tmp_path / "strategy.json", text)
    _refused(_open(tmp_path), "not a MindSpore parallel strategy file")


def test_a_misspelled_strategy_key_is_named(tmp_path):
    _rank_folder(tmp_path, [0, 1])
    _strategy_json(tmp_path / "strategy.json", {"w": {"dev_matrix": [2], "tensor_map": [0, -1],
                                                      "opt_weight_shard_sise": 2}})
    _refused(_open(tmp_path), "unknown keys 'opt_weight_shard_sise'")


@pytest.mark.parametrize("name", ["²-w", "9" * 5000 + "-w", "٣-w"])
def test_stage_prefixes_that_are_not_ascii_numbers_stay_names(tmp_path, name):
    _rank_folder(tmp_path, [0, 1])
    _strategy_json(tmp_path / "strategy.json", {name: {"dev_matrix": [2], "tensor_map": [0, -1]}})
    _refused(_open(tmp_path), "which no rank file holds")


def test_an_index_with_a_huge_integer_is_refused(tmp_path):
    write_safetensors(tmp_path / "a.safetensors", {"w": ("F32", [8], ROW.tobytes())})
    (tmp_path / "model.safetensors.index.json").write_text(
        '{"metadata": {"total_size": ' + "7" * 5000 + '}, "weight_map": {"w": "a.safetensors"}}'
    )
    _refused(_open(tmp_path / "model.safetensors.index.json"), "not valid JSON")


def test_natural_order_survives_superscript_and_long_digit_runs():
    from ms_notebook.checkpoint.sets.shards import natural_key

    names = ["p10", "p2", "p²", "p" + "9" * 5000, "p٣"]
    assert sorted(names, key=natural_key)[:2] == ["p2", "p10"]


def test_a_sliced_parameter_the_strategy_leaves_out_is_an_error_not_rank_0s_slice(tmp_path):
    from tests.set_support import L, write_rank_set

    w = np.arange(48, dtype=np.float32).reshape(8, 6)
    v = np.arange(24, dtype=np.float32).reshape(4, 6) + 100
    lay = L([2], [0, -1])
    write_rank_set(tmp_path, {"w": w, "v": v}, {"w": lay, "v": lay}, ranks=2, omit=frozenset({"v"}),
                   extra={"global_step": np.array([7], np.int32)})
    _refused(_open(tmp_path), "'v' is not in the strategy", "rank_1 holds other values than rank_0")


def test_a_strategy_naming_a_hundred_thousand_strangers_stops_at_the_first(tmp_path):
    _rank_folder(tmp_path, [0, 1])
    _strategy_pb(tmp_path / "strategy.ckpt", {f"p.{i}": _layout([2], [0, -1]) for i in range(100_000)})
    _refused(_open(tmp_path), "the strategy names 'p.0', which no rank file holds")


def test_an_index_over_64_mib_is_refused_before_it_is_read(tmp_path):
    write_safetensors(tmp_path / "a.safetensors", {"w": ("F32", [8], ROW.tobytes())})
    index = tmp_path / "model.safetensors.index.json"
    with open(index, "w") as f:
        f.write('{"weight_map": {"w": "a.safetensors"}, "metadata": {"pad": "')
        f.truncate(65 << 20)  # a sparse file: 65 MiB of NUL, never read
    _refused(_open(index), "an index of 68,157,440 bytes is too large")
