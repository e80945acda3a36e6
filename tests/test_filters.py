"""One filter syntax for every view: the rules themselves, and the Checkpoint Viewer's server, the notebook
browser's tree model, the transfer panel and the CLI giving the same matches for the same text on the demo
checkpoint (network weights, Momentum state and appended values, written by MindSpore)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ms_notebook.checkpoint import open_checkpoint
from ms_notebook.checkpoint.filters import FilterError, compile_filter, filter_kind, select
from ms_notebook.widgets.tree_model import TreeModel
from tests.servers import jupyter_env, jupyter_server

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["*.weight", "/bn/", "bn", "BIAS", "/block1/bn/", "/block2.conv/", "re:^head", "/^moments\\..*bn/",
         "block?.bn.*", "moving_[mv]*", "*.bn", "no-such-name", "/global_step/"]


@pytest.fixture(scope="module")
def demo_ckpt() -> Path:
    from ms_notebook.demo import pretrained_checkpoint

    return Path(pretrained_checkpoint())


@pytest.fixture(scope="module")
def ck(demo_ckpt):
    return open_checkpoint(demo_ckpt)


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_ckpt) -> Iterator[tuple[str, str]]:
    """A Jupyter server with the ms_notebook extension and the demo checkpoint in its root."""
    base = tmp_path_factory.mktemp("filters")
    root = base / "root"
    root.mkdir()
    shutil.copyfile(demo_ckpt, root / "demo.ckpt")
    with jupyter_server([sys.executable, "-m", "jupyter_server"], root, jupyter_env(base), base / "log",
                        ["--ServerApp.jpserver_extensions={'ms_notebook': True}"]) as running:
        yield running


def _viewer_names(server, text: str, groups: str = "weights") -> tuple[list[str], dict]:
    """The names the Checkpoint Viewer is sent for ``text`` (it asks for the groups it shows)."""
    url, token = server
    query = urllib.parse.urlencode({"path": "demo.ckpt", "filter": text, "groups": groups, "depth": "0",
                                    "limit": "2000"})
    request = urllib.request.Request(f"{url}/ms-notebook/checkpoint?{query}",
                                     headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read())
    return [row[0] for row in body["entries"]["rows"]], body


def _widget_names(ck, text: str, show: tuple[str, ...] = ()) -> list[str]:
    model = TreeModel(ck.entries)
    for group in show:
        model.set_group_visible(group, True)
    model.set_filter(text)
    assert not model.filter_error
    return [leaf.id for leaf in model.visible_leaves()]


# --- the rules ---------------------------------------------------------------------------------------------


def test_each_form_follows_its_documented_rule():
    names = ["block1.bn.gamma", "bnorm.x", "block1.conv.weight", "head.weight", "head.bias",
             "moments.block1.bn.gamma", "model.layers.12.w", "layers.3.w"]

    def hits(text):
        match = compile_filter(text)
        return [n for n in names if match(n)]

    assert filter_kind("bias") == "substring" and hits("BiAs") == ["head.bias"]
    assert filter_kind("*.weight") == "glob"
    assert hits("*.weight") == ["block1.conv.weight", "head.weight"]
    assert hits("layers.1*") == ["model.layers.12.w"]  # a glob over a dotted tail
    assert hits("head.*") == ["head.weight", "head.bias"]  # ... or over the whole name
    assert filter_kind("/bn/") == "segments"
    assert hits("/bn/") == ["block1.bn.gamma", "moments.block1.bn.gamma"]  # whole segments: not "bnorm"
    assert hits("/block1/bn/") == hits("/block1.bn/") == ["block1.bn.gamma", "moments.block1.bn.gamma"]
    assert hits("/BN/") == hits("/bn/")
    assert hits("/gamma/") == ["block1.bn.gamma", "moments.block1.bn.gamma"]  # a last segment counts too
    assert filter_kind("/^head\\.(weight|bias)$/") == "regex"
    assert hits("/^head\\.(weight|bias)$/") == ["head.weight", "head.bias"]
    assert hits("re:bn") == ["block1.bn.gamma", "bnorm.x", "moments.block1.bn.gamma"]  # re: always a regex
    assert compile_filter("   ") is None and filter_kind("") == ""
    assert hits("/") == [] and hits("//") == []  # too short to be a pattern: substring


@pytest.mark.parametrize("text", ["re:[unclosed", "/(/", "/a{2,1}/"])
def test_a_bad_regular_expression_is_a_clear_error(text):
    with pytest.raises(FilterError, match="invalid regular expression") as err:
        compile_filter(text)
    assert isinstance(err.value, ValueError)
    assert "Traceback" not in str(err.value)


def test_select_keeps_the_file_order(ck):
    picked = select(ck.entries, "*.weight")
    assert [e.name for e in picked] == [e.name for e in ck.entries if e.name.endswith(".weight")]
    assert select(ck.entries, "") == list(ck.entries)


# --- every view gives the same matches ----------------------------------------------------------------------


def test_viewer_and_notebook_browser_find_the_same_tensors(server, ck):
    weights = {e.name for e in ck.entries if e.group == "weights"}
    for text in TEXTS:
        viewer, body = _viewer_names(server, text)
        assert body["filter_error"] == ""
        widget = _widget_names(ck, text)  # in tree order; the server pages in file order
        assert sorted(viewer) == sorted(widget), text
        assert set(viewer) <= weights
        # with every group shown (the Viewer's toggles ticked, the browser's checkboxes ticked)
        everything, _ = _viewer_names(server, text, groups="")
        assert sorted(everything) == sorted(_widget_names(ck, text, show=("optimizer", "extra"))), text


def test_the_demo_answers_what_notebook_01_suggests(server, ck):
    viewer, body = _viewer_names(server, "*.weight")
    assert viewer == ["block1.conv.weight", "block2.conv.weight", "block3.dense.weight", "head.weight"]
    viewer, body = _viewer_names(server, "/bn/")
    assert sorted(viewer) == sorted(f"block{b}.bn.{p}" for b in (1, 2)
                                    for p in ("gamma", "beta", "moving_mean", "moving_variance"))
    # what the hidden groups hold is counted, so the Viewer can say so beside its toggles
    assert body["filter_matches"] == {"weights": 8, "optimizer": 4}
    assert body["entries"]["total"] == 8


def test_a_bad_regex_reaches_the_viewer_as_a_message_not_an_error_status(server):
    names, body = _viewer_names(server, "/(/")
    assert names == [] and "invalid regular expression" in body["filter_error"]


def test_the_transfer_panel_tree_uses_the_same_filter(ck):
    from ms_notebook.demo import DigitsNet
    from ms_notebook.widgets.transfer_panel import TransferPanel

    panel = TransferPanel(DigitsNet(num_classes=5), ck)
    panel.tree.set_filter("/bn/")
    shown = [r["id"] for r in panel.tree.rows if not r["has_children"]]
    # the network's parameters are named as the checkpoint's weights: the same eight bn tensors
    assert sorted(shown) == sorted(_widget_names(ck, "/bn/")) and len(shown) == 8


def test_cli_filter_prints_the_matching_tree(demo_ckpt, ck):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "ms_notebook", "inspect", str(demo_ckpt), *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    proc = cli("--filter", "*.weight", "--group", "weights", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["matches"] == 4 and out["tree"]["tensors"] == 4
    proc = cli("--filter", "/bn/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{len(select(ck.entries, '/bn/'))} of {len(ck)} tensors")
    assert "  bn/  4 tensors, 32 params, 128 B" in proc.stdout
    assert "conv" not in proc.stdout
    proc = cli("--filter", "re:[unclosed")
    assert proc.returncode == 2
    assert "--filter: invalid regular expression" in proc.stderr and "Traceback" not in proc.stderr


def test_viewer_and_widget_show_the_same_hint():
    from ms_notebook.checkpoint.filters import FILTER_HINT
    from ms_notebook.widgets.tree import TreeView

    source = (ROOT / "labextension" / "src" / "viewer.ts").read_text()
    assert f"export const FILTER_HINT = '{FILTER_HINT}';" in source
    assert TreeView.placeholder.default_value == FILTER_HINT


def test_the_viewer_is_told_nan_from_inf_in_the_first_values(tmp_path):
    """The preview the Viewer shows names NaN, +Inf and -Inf apart (JSON has none of them as numbers)."""
    import math

    import mindspore as ms
    import numpy as np

    from ms_notebook.server.payload import tensor_detail

    values = np.array([np.nan, np.inf, -np.inf, 1.5, 0.0], np.float32)
    path = tmp_path / "odd.ckpt"
    ms.save_checkpoint([{"name": "odd", "data": ms.Tensor(values)}], str(path))
    detail = tensor_detail(open_checkpoint(path), "odd")
    assert detail["preview"] == ["NaN", "Infinity", "-Infinity", 1.5, 0.0]
    assert detail["stats"]["nan_count"] == 1 and detail["stats"]["inf_count"] == 2
    json.dumps(detail, allow_nan=False)  # what the handler sends
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in detail["preview"])
