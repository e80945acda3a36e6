"""The static-rendering mechanism every widget uses: one bundle with the view and its copies, refreshed in
place, composites following their children, and button-driven changes waiting for the next cell."""

from __future__ import annotations

import ipywidgets as W

from ms_notebook.widgets import static
from ms_notebook.widgets.static import WIDGET_VIEW, StaticRendering, png_css_width


class Note(StaticRendering, W.HTML):
    """The smallest widget with a static copy: its own value."""

    def static_html(self) -> str:
        if self.value == "broken":
            raise ValueError("cannot draw")
        return f"<p>{self.value}</p>"


class Page(StaticRendering, W.VBox):
    """A composite whose copy is its children's."""

    def static_html(self) -> str:
        return "".join(child.static_html() for child in self.children)


class Display:
    """Where a displayed widget's bundle went (what IPython's DisplayHandle receives)."""

    def __init__(self) -> None:
        self.bundles: list[dict] = []

    def update(self, bundle, metadata=None, raw=False) -> None:
        assert raw
        self.bundles.append(bundle)


def displayed(widget: StaticRendering) -> Display:
    handle = Display()
    widget._static_handles_list().append(handle)
    return handle


def test_the_bundle_holds_the_widget_view_the_html_copy_and_a_short_text():
    note = Note("hello")
    bundle = note.static_bundle()
    assert bundle[WIDGET_VIEW]["model_id"] == note.model_id
    assert "<p>hello</p>" in bundle["text/html"] and 'data-widget="Note"' in bundle["text/html"]
    assert bundle["text/plain"].startswith("Note (an ms-notebook widget")
    assert note._repr_mimebundle_() == bundle


def test_a_copy_that_fails_never_hides_the_widget():
    bundle = Note("broken").static_bundle()
    assert WIDGET_VIEW in bundle and "no static copy: ValueError: cannot draw" in bundle["text/html"]


def test_refresh_updates_every_display_and_the_composites_holding_the_widget():
    note = Note("one")
    page = Page([note])
    page.adopt_static(note)
    note_shown, page_shown = displayed(note), displayed(page)
    note.value = "two"
    note.refresh_static()
    assert "<p>two</p>" in note_shown.bundles[-1]["text/html"]
    assert "<p>two</p>" in page_shown.bundles[-1]["text/html"]


def test_changes_made_with_the_widgets_own_controls_wait_for_the_next_cell():
    note = Note("one")
    shown = displayed(note)
    with note.deferred_static():  # a button's action
        note.value = "clicked"
        note.refresh_static()
    assert shown.bundles == []  # no re-render under the pointer
    note.mark_static_stale()
    static._refresh_stale()  # what IPython's pre_run_cell hook calls
    assert len(shown.bundles) == 1 and "<p>clicked</p>" in shown.bundles[0]["text/html"]
    static._refresh_stale()
    assert len(shown.bundles) == 1  # refreshed once


def test_a_png_is_shown_at_half_its_pixel_width():
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8 + (1440).to_bytes(4, "big") + (512).to_bytes(4, "big")
    assert png_css_width(png) == 720
    assert png_css_width(b"not a png") == 0
