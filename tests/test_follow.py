"""follow() never dies on what a metrics file holds: bad lines skipped and counted, bytes decoded whole
across writes, truncation and rotation followed. Fuzzed with hypothesis on a real file."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ms_notebook.runs.curves import Follower, LiveCurves, follow
from ms_notebook.runs.history import read_jsonl


def step(n: int, loss: float = 1.0) -> bytes:
    return (json.dumps({"type": "step", "epoch": 1, "step": n, "loss": loss}) + "\n").encode()


def follower_for(path: Path) -> Follower:
    return Follower(path, timeout=60, poll_s=0.01, curves=LiveCurves(display=False))


_chars = st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",))
_text = st.text(alphabet=_chars, max_size=12)
BAD_LINES = st.one_of(
    st.binary(max_size=20).map(lambda b: b"\xff" + b.replace(b"\n", b"")),  # not UTF-8
    _text.map(lambda t: ("{" + t).encode()),  # not JSON
    st.sampled_from([b"[1, 2]", b"42", b'"step"', b"null", b'{"no": "type"}', b'{"type": 5}']),
    st.one_of(st.text(max_size=5), st.lists(st.integers(), max_size=2), st.booleans(), st.just(1.5)).map(
        lambda v: json.dumps({"type": "step", "epoch": 1, "step": v, "loss": 0.5}).encode()  # wrong type
    ),
    st.sampled_from(["loss", "lr", "wall_time"]).map(
        lambda k: json.dumps({"type": "step", "step": 1, k: "fast"}).encode()
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(st.one_of(st.tuples(st.just("good"), st.floats(allow_nan=True, allow_infinity=True)),
                             st.tuples(st.just("bad"), BAD_LINES)), max_size=25),
    cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=30),
)
def test_any_stream_cut_anywhere_gives_every_good_record_and_counts_every_bad_line(tmp_path, lines, cuts):
    path = tmp_path / f"fuzz-{time.monotonic_ns()}.jsonl"
    stream = json.dumps({"type": "begin", "label": "ünï ✓ 训练"}).encode() + b"\n"
    good, bad, n = [], 0, 0
    for kind, value in lines:
        if kind == "good":
            n += 1
            good.append(n)
            stream += step(n, value)
        else:
            bad += 1
            stream += value + b"\n"
    follower = follower_for(path)
    with open(path, "wb") as out:
        position = 0
        for cut in cuts:
            out.write(stream[position:position + cut])
            out.flush()
            position += cut
            follower.poll()
        out.write(stream[position:])
        out.flush()
    follower.poll()
    history = follower.history
    assert history["step"].tolist() == good
    assert follower.skipped == bad
    assert follower.curves.history_obj.label == "ünï ✓ 训练"


def test_a_character_split_across_two_writes_is_decoded_whole(tmp_path):
    path = tmp_path / "split.jsonl"
    line = json.dumps({"type": "begin", "label": "训练"}, ensure_ascii=False).encode() + b"\n"
    cut = line.index("练".encode()) + 1  # inside the three bytes of one character
    follower = follower_for(path)
    with open(path, "wb") as out:
        out.write(line[:cut])
        out.flush()
        follower.poll()
        out.write(line[cut:] + step(1))
        out.flush()
    follower.poll()
    assert follower.skipped == 0
    assert follower.curves.history_obj.label == "训练" and len(follower.history) == 1


def test_a_truncated_and_rewritten_file_starts_a_new_run(tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_bytes(json.dumps({"type": "begin", "label": "first"}).encode() + b"\n" + step(1) + step(2))
    follower = follower_for(path)
    follower.poll()
    assert len(follower.history) == 2
    path.write_bytes(b"")  # truncated (open(..., "w") by a restarted script) ...
    follower.poll()
    with open(path, "ab") as out:  # ... then written again, longer than before
        out.write(json.dumps({"type": "begin", "label": "second"}).encode() + b"\n")
        out.write(step(1, 0.5) + step(2, 0.4) + step(3, 0.3))
    follower.poll()
    assert follower.truncations == 1
    assert follower.curves.history_obj.label == "second" and follower.history["step"].tolist() == [1, 2, 3]
    assert [o.label for o in follower.curves.overlays] == ["first"]


def test_a_file_rewritten_in_place_while_not_watched_is_noticed(tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_bytes(json.dumps({"type": "begin", "label": "first", "time": 1.0}).encode() + b"\n" + step(1))
    follower = follower_for(path)
    follower.poll()
    # rewritten between two polls, longer than before: only its first bytes tell
    path.write_bytes(json.dumps({"type": "begin", "label": "again", "time": 2.0}).encode() + b"\n"
                     + step(1) + step(2) + step(3))
    follower.poll()
    assert follower.truncations == 1 and follower.skipped == 0
    assert follower.curves.history_obj.label == "again" and len(follower.history) == 3


def test_a_rotated_file_is_finished_then_the_new_one_followed(tmp_path):
    path = tmp_path / "run.jsonl"
    with open(path, "wb") as out:
        out.write(json.dumps({"type": "begin", "label": "long run"}).encode() + b"\n" + step(1))
        out.flush()
        follower = follower_for(path)
        follower.poll()
        out.write(step(2))  # written just before the rotation, not yet read
    os.replace(path, tmp_path / "run.jsonl.1")
    path.write_bytes(step(3) + step(4))  # the same run goes on in a new file
    follower.poll()
    assert follower.rotations == 1
    assert follower.history["step"].tolist() == [1, 2, 3, 4]
    assert follower.curves.history_obj.label == "long run" and follower.curves.overlays == []


def test_the_following_thread_survives_bad_lines_and_stops_at_the_end(tmp_path):
    path = tmp_path / "job.jsonl"
    path.write_bytes(b"\xfe\xff\n" + b"[]\n" + step(1) + b'{"type": "step", "step": {"a": 1}}\n' + step(2)
                     + b'{"type": "end"}\n' + step(3))
    follower = follow(path, timeout=10, poll_s=0.01, display=False)
    assert follower.wait(timeout=10) == "end"
    assert follower.history["step"].tolist() == [1, 2]
    assert follower.skipped == 3 and follower.errors == 0


def test_a_missing_file_is_waited_for(tmp_path):
    path = tmp_path / "later.jsonl"
    follower = follower_for(path)
    assert follower.poll() is False
    path.write_bytes(step(1))
    assert follower.poll() is True and len(follower.history) == 1


@pytest.mark.slow
def test_metrics_files_are_strict_json_with_null_for_a_nan_loss(tmp_path):
    import mindspore as ms
    import numpy as np
    from mindspore import nn
    from mindspore.dataset import NumpySlicesDataset
    from mindspore.train import Model

    ms.set_seed(0)
    net = nn.SequentialCell(nn.Flatten(), nn.Dense(64, 10))
    images = np.random.default_rng(0).random((64, 1, 8, 8)).astype(np.float32)
    images[40] = np.nan  # one poisoned sample: its batch's loss is NaN
    labels = np.zeros(64, np.int32)
    data = NumpySlicesDataset((images, labels), column_names=["image", "label"], shuffle=False).batch(16)
    log = tmp_path / "metrics.jsonl"
    curves = LiveCurves(display=False, log_path=log)
    Model(net, nn.SoftmaxCrossEntropyWithLogits(True, "mean"), nn.SGD(net.trainable_params(), 0.01)).train(
        1, data, callbacks=[curves])
    text = log.read_text()
    assert "NaN" not in text
    records = [json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON token {c}"))
               for line in text.splitlines()]
    losses = [r["loss"] for r in records if r["type"] == "step"]
    assert losses[2] is None and all(isinstance(v, float) for v in losses[:2])
    assert len(read_jsonl(log)) == len(records)
