"""One size and count rule: binary units labelled KiB/MiB, counts with K/M/B, the same text from Python
(``checkpoint.units``: CLI, widgets) and from the Checkpoint Viewer's TypeScript
(``labextension/src/units.ts``, run here under node as the build compiled it); and the viewer's guard that
keeps status codes and absolute paths out of the messages it shows (``messages.ts``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ms_notebook.checkpoint import open_checkpoint
from ms_notebook.checkpoint.units import format_bytes, format_count, format_int
from ms_notebook.widgets.tree_model import TreeModel, human_bytes, human_count

COMPILED = Path(__file__).resolve().parent.parent / "labextension" / "lib"

BYTES = [0, 1, 288, 1023, 1024, 1025, 1280, 1536, 4608, 10239, 10240, 65536, 65792, 148_377, 1_048_063,
         1_048_525, 1_048_576, 1_073_741_823, 5 * 2**30 + 2**29, 2**40 * 3, 2**50 * 7, 2**60]
COUNTS = [0, 7, 650, 999, 1000, 1005, 1216, 1500, 9994, 9995, 9999, 16_448, 18_418, 99_950, 123_456,
          999_499, 999_500, 999_999, 1_000_000, 7_241_732_096, 999_999_999_999, 10**15]


def test_bytes_use_binary_units_labelled_as_such():
    assert format_bytes(288) == "288 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(4608) == "4.5 KiB"
    assert format_bytes(65536) == "64.0 KiB"
    assert format_bytes(65792) == "64.3 KiB"  # 64.25: a tie rounds up, in Python as in the browser
    assert format_bytes(1_048_525) == "1.0 MiB"  # would be "1024.0 KiB": moves to the next unit
    assert format_bytes(5 * 2**30 + 2**29) == "5.5 GiB"
    assert "KB" not in format_bytes(4608) and "MB" not in format_bytes(2**21)


def test_counts_are_exact_below_a_thousand_then_three_significant_digits():
    assert [format_count(n) for n in (650, 999, 1216, 16_448, 999_999, 7_241_732_096)] == [
        "650", "999", "1.22K", "16.4K", "1.00M", "7.24B"]
    assert format_count(9996) == "10.0K"  # not "10.00K"
    assert format_int(18_418) == "18,418"


def test_cli_and_widgets_print_sizes_and_counts_by_the_same_rule(tmp_path):
    import mindspore as ms

    import ms_notebook

    net = ms_notebook.demo.DigitsNet(num_classes=10)
    path = tmp_path / "digits.ckpt"
    ms.save_checkpoint(net, str(path))
    ck = open_checkpoint(path)
    assert human_bytes is format_bytes and human_count is format_count
    rows = {r["id"]: r for r in TreeModel(ck.entries).rows()}
    block2 = ck.tree()["block2"]
    assert rows["block2"]["values"]["params"] == format_count(block2.parameters) == "1.22K"
    assert rows["block3"]["values"]["params"] == "16.4K"
    assert rows["block2"]["values"]["size"] == format_bytes(block2.bytes)
    summary = ck.summary(depth=1)
    assert f"block2/  5 tensors, 1,216 params, {format_bytes(block2.bytes)}" in summary
    assert format_bytes(ck.file_size) in summary.splitlines()[0]
    assert " KB" not in summary and " MB" not in summary


def _node(tmp_path: Path, modules: list[str], script: str):
    """Run ``script`` (an ES module importing ``./<module>.mjs``) under node next to the compiled modules."""
    node = shutil.which("node")
    assert node, "node is needed to build the JupyterLab extension and to run this test"
    for module in modules:
        compiled = COMPILED / f"{module}.js"
        if not compiled.exists():
            pytest.fail(f"{compiled} is missing: build the extension (cd labextension && jlpm build:prod)")
        shutil.copyfile(compiled, tmp_path / f"{module}.mjs")  # .mjs: node reads it as the ES module it is
    (tmp_path / "main.mjs").write_text(script)
    proc = subprocess.run([node, "main.mjs"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_viewer_typescript_prints_what_python_prints(tmp_path):
    numbers = json.dumps({"bytes": BYTES, "counts": COUNTS})
    ts = _node(tmp_path, ["units"], (
        "import { formatBytes, formatCount, formatInt } from './units.mjs';\n"
        f"const n = {numbers};\n"
        "console.log(JSON.stringify({bytes: n.bytes.map(formatBytes), counts: n.counts.map(formatCount),"
        " ints: n.counts.map(formatInt)}));\n"
    ))
    assert ts["bytes"] == [format_bytes(n) for n in BYTES]
    assert ts["counts"] == [format_count(n) for n in COUNTS]
    assert ts["ints"] == [format_int(n) for n in COUNTS]


def test_viewer_messages_keep_neither_status_codes_nor_absolute_paths(tmp_path):
    # (server message, the file the viewer asked about) -> what it shows after "Cannot open <path>: "
    cases = [
        ("/srv/lab/root/sub/broken.ckpt: not a MindSpore checkpoint", "sub/broken.ckpt",
         "not a MindSpore checkpoint"),
        ("sub/broken.ckpt: truncated at byte 12", "sub/broken.ckpt", "truncated at byte 12"),
        ("broken.ckpt: the file is empty", "sub/broken.ckpt", "the file is empty"),
        ("422: /home/u/x/model.ckpt is encrypted", "model.ckpt", "model.ckpt is encrypted"),
        ("cannot read '/opt/data/other.ckpt' (see C:\\Users\\me\\w.ckpt)", "a.ckpt",
         "cannot read 'other.ckpt' (see w.ckpt)"),
        ("no entries under 'block1/x', 8/10 done", "m.ckpt", "no entries under 'block1/x', 8/10 done"),
    ]
    shown = _node(tmp_path, ["messages"], (
        "import { cleanMessage } from './messages.mjs';\n"
        f"const cases = {json.dumps([[m, p] for m, p, _ in cases])};\n"
        "console.log(JSON.stringify(cases.map(([m, p]) => cleanMessage(m, p))));\n"
    ))
    assert shown == [expected for _, _, expected in cases]
