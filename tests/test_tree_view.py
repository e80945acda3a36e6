"""Tree model and TreeView widget state on a real checkpoint with optimizer state: expand, filter, toggles,
checks."""

from __future__ import annotations

import mindspore as ms
import pytest

from ms_notebook.checkpoint import open_checkpoint
from ms_notebook.widgets.tree import TreeView
from ms_notebook.widgets.tree_model import Column, TreeModel, compile_filter
from tests.test_compare import SmallCNN, train_steps


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    """A real checkpoint of a trained multi-layer net: weights, Momentum state, an appended epoch number."""
    path = tmp_path_factory.mktemp("tree") / "trained.ckpt"
    ms.save_checkpoint(train_steps(SmallCNN(), steps=2), str(path), append_dict={"epoch_num": 3})
    return open_checkpoint(path)


def ids(rows):
    return [r["id"] for r in rows]


def weights(ck, prefix=""):
    return [e for e in ck.entries if e.group == "weights" and e.name.startswith(prefix)]


def test_top_level_rows_are_the_blocks_with_subtree_totals(ck):
    rows = TreeModel(ck.entries).rows()
    assert ids(rows) == ["block1", "block2", "block3", "head"]
    for row in rows:
        leaves = weights(ck, row["id"] + ".")
        assert row["values"]["tensors"] == len(leaves)
        assert row["has_children"] and not row["expanded"]
    head = next(r for r in rows if r["id"] == "head")
    assert head["values"]["params"] == str(sum(e.numel for e in weights(ck, "head.")))


def test_optimizer_and_extra_are_hidden_by_default_and_toggles_show_them(ck):
    model = TreeModel(ck.entries)
    assert model.counts() == {"visible": len(weights(ck)), "total": len(ck.entries)}
    model.set_group_visible("optimizer", True)
    assert "moments" in ids(model.rows())
    assert "epoch_num" not in ids(model.rows())
    model.set_group_visible("extra", True)
    assert "epoch_num" in ids(model.rows())
    assert model.counts()["visible"] == len(ck.entries)


def test_expand_shows_children_and_collapse_hides_them(ck):
    model = TreeModel(ck.entries)
    model.set_expanded("block1", True)
    model.set_expanded("block1.0", True)
    rows = model.rows()
    assert ids(rows)[:4] == ["block1", "block1.0", "block1.0.weight", "block1.1"]
    leaf = rows[2]
    assert leaf["values"]["shape"] == "8×1×3×3" and leaf["values"]["dtype"] == "Float32"
    assert not leaf["has_children"] and leaf["depth"] == 2
    model.set_expanded("block1", False)
    assert ids(model.rows()) == ["block1", "block2", "block3", "head"]


def test_substring_filter_keeps_ancestors_of_matches_expanded(ck):
    model = TreeModel(ck.entries)
    model.set_filter("GAMMA")
    rows = model.rows()
    assert ids(rows) == ["block1", "block1.1", "block1.1.gamma", "block2", "block2.1", "block2.1.gamma"]
    assert all(r["expanded"] for r in rows if r["has_children"])
    assert model.counts()["visible"] == 2


def test_glob_and_regex_filters_and_a_bad_regex(ck):
    model = TreeModel(ck.entries)
    model.set_filter("*.bias")
    assert [r["id"] for r in model.rows() if not r["has_children"]] == ["block3.bias", "head.bias"]
    model.set_filter("block?.0.*")
    assert model.counts()["visible"] == 2
    model.set_filter("/^head\\.(weight|bias)$/")
    assert model.counts()["visible"] == 2
    model.set_filter("re:[unclosed")
    assert "invalid regular expression" in model.filter_error
    assert model.counts()["visible"] == 2  # the previous filter stays in force
    assert compile_filter("  ") is None


def test_clearing_the_filter_restores_the_expand_state(ck):
    model = TreeModel(ck.entries)
    model.set_expanded("head", True)
    model.set_filter("moving")
    assert "head" not in ids(model.rows())
    model.set_filter("")
    assert model.expanded == {"head"}
    assert ids(model.rows()) == ["block1", "block2", "block3", "head", "head.bias", "head.weight"]


def test_check_column_is_tristate_on_inner_nodes_and_follows_the_filter(ck):
    model = TreeModel(ck.entries)
    model.add_columns([Column("freeze", "Freeze", "check")])
    model.set_filter("block1")
    changed = model.toggle_check("freeze", "block1.1")
    assert sorted(changed) == sorted(e.name for e in weights(ck, "block1.1."))
    rows = {r["id"]: r for r in model.rows()}
    assert rows["block1.1"]["checks"]["freeze"] is True
    assert rows["block1"]["checks"]["freeze"] == "mixed"
    assert rows["block1.0.weight"]["checks"]["freeze"] is False
    model.toggle_check("freeze", "block1")  # mixed -> all checked
    assert model.check_state("freeze", model.nodes["block1"]) is True
    model.toggle_check("freeze", "block1")  # all -> none
    assert model.checks["freeze"] == set()


def test_only_statuses_keeps_rows_with_those_statuses(ck):
    model = TreeModel(ck.entries)
    model.set_statuses(
        {"head.weight": "shape_mismatch", "block1.0.weight": "matched"}, only={"shape_mismatch"}
    )
    model.expand_all()
    assert ids(model.rows()) == ["head", "head.weight"]
    assert model.rows()[1]["status"] == "shape_mismatch"


def test_tree_view_applies_intents_sent_by_the_view(ck):
    view = TreeView(TreeModel(ck.entries))
    assert [c["key"] for c in view.columns] == ["shape", "dtype", "params", "size"]
    assert view.summary == f"{len(weights(ck))} of {len(ck.entries)} tensors"
    view.handle_intent({"type": "expand", "id": "head", "expanded": True})
    assert ids(view.rows) == ["block1", "block2", "block3", "head", "head.bias", "head.weight"]
    view.handle_intent({"type": "select", "id": "head.bias"})
    assert view.selected == "head.bias"
    view.handle_intent({"type": "select", "id": "no.such.tensor"})
    assert view.selected == ""
    view.handle_intent({"type": "filter", "text": "block3"})
    assert ids(view.rows) == ["block3", "block3.bias", "block3.weight"]
    assert view.filter_text == "block3" and view.summary.startswith("2 of")
    view.handle_intent({"type": "filter", "text": "/(/"})
    assert view.filter_error and ids(view.rows) == ["block3", "block3.bias", "block3.weight"]


def test_tree_view_check_intent_updates_rows_and_calls_back(ck):
    view = TreeView(TreeModel(ck.entries))
    view.add_columns([Column("reload", "Reload", "check")])
    assert view.columns[-1] == {"key": "reload", "label": "Reload", "kind": "check", "sample": "Reload"}
    seen = []
    view.on_check(lambda column, row, changed: seen.append((column, row, sorted(changed))))
    view.handle_intent({"type": "check", "column": "reload", "id": "head"})
    assert seen == [("reload", "head", ["head.bias", "head.weight"])]
    assert next(r for r in view.rows if r["id"] == "head")["checks"] == {"reload": True}


def test_columns_are_as_wide_as_their_longest_text_and_do_not_shrink_when_filtering(ck):
    view = TreeView(TreeModel(ck.entries))
    view.set_expanded("block1", True)
    samples = {c["key"]: c["sample"] for c in view.columns}
    for column in view.columns:  # the view sizes each column to its sample, in the column's font
        texts = [str(r["values"].get(column["key"], "")) for r in view.rows] + [column["label"]]
        assert column["sample"] in texts and len(column["sample"]) == max(map(len, texts))
    view.set_filter("bias")  # other rows: a column may grow, never shrink (no jumping while typing)
    filtered = {c["key"]: c["sample"] for c in view.columns}
    assert all(len(filtered[key]) >= len(text) for key, text in samples.items())
    view.set_filter("")
    assert {c["key"]: c["sample"] for c in view.columns} == filtered


def test_static_copy_lists_the_visible_rows_with_their_values(ck):
    view = TreeView(TreeModel(ck.entries))
    view.set_expanded("head", True)
    html_copy = view.static_html()
    for row in view.rows:
        assert f'data-id="{row["id"]}"' in html_copy
    assert "head.weight" in html_copy and view.summary in html_copy
    bundle = view.static_bundle()
    assert bundle["text/html"].count("ms-static-row") == len(view.rows)
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == view.model_id
