"""Static renderings: every widget's display bundle carries HTML (and a PNG for figures) beside its view.

Who shows what (checked with JupyterLab 4.6, ipywidgets 8.1, nbconvert 7.17):

* JupyterLab and Notebook 7 pick, per output, the highest-ranked mime type they may render. The widget
  view (``application/vnd.jupyter.widget-view+json``) ranks first but is "unsafe": in a *trusted* notebook
  (one this user ran and saved) it is always chosen, and without a model for it the output says "Error
  displaying widget: model not found" (no fallback). Models come from the running kernel or from the widget
  state saved in the notebook's metadata, which ipywidgets writes only when its ``saveState`` setting is on
  (off by default; this package ships it on, ``share/jupyter/lab/settings/overrides.d/ms-notebook.json``).
  The saved state is loaded when the notebook opens with a kernel (a fresh one is fine); with "No Kernel"
  the views wait ("Loading widget..."). In an *untrusted* notebook (from someone else, or executed by
  nbclient) only safe renderers run: the ``text/html`` beside the view is shown, sanitized (``<style>``
  elements are dropped; inline ``style`` attributes, tables and ``data:`` images stay), and ``image/png``
  when there is no HTML.
* nbconvert HTML (command line and File ▸ Save and Export) uses the widget view only for models present in
  the saved widget state, drawing them with ipywidgets' HTML manager from a CDN; for any other output it
  takes ``text/html``, then ``image/png``. ``--ClearMetadataPreprocessor.enabled=True`` drops the state and
  so exports these static renderings (also offline). GitHub and other viewers without a widget manager show
  ``text/html`` too; PDF/LaTeX exports take ``image/png``.
* A display can be updated in place later (``update_display_data``, even from another cell or a training
  thread) through its display id; JupyterLab then renders the view again from its model (a blink; the tree
  scrolls back to the top), so static copies are refreshed at milestones, not on every click: when a run
  ends, and when code changes the widget (``apply()``, ``select()``, ``select_tab()`` in a cell). A change
  made with the widget's own buttons (Apply) refreshes the copy when the next cell runs instead, so the view
  the user is looking at does not blink under the pointer.

The mechanism, for every widget (new ones too)::

    class MyView(StaticRendering, ipywidgets.VBox):
        def static_html(self) -> str:         # what a reader without the kernel sees; inline styles only
            ...
        def static_png(self) -> bytes | None: # optional: the current figure (PNG at 2x density)
            ...
    view.refresh_static()                     # after what it shows changed for good
    view.mark_static_stale()                  # changed through its own controls: refresh at the next cell
    with view.deferred_static(): ...          # around a button's action: refreshes wait for the next cell
    self.adopt_static(child)                  # a composite (the Studio) is refreshed when a child is

Displaying such a widget (last expression of a cell, ``display(view)``) sends one bundle with the widget view,
``text/html``, ``image/png`` when there is a figure, and a short ``text/plain``, under a display id.
"""

from __future__ import annotations

import base64
import contextlib
import html
import threading
import uuid
import weakref
from collections.abc import Iterator
from typing import Any

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# Inline styles survive JupyterLab's sanitizer (style elements do not; nor do values with CSS variables, which
# then fall back to the theme's text colour). Variables with fallbacks colour exports and trusted views.
MUTED = "color:var(--jp-ui-font-color2,#616161)"
FRAME = "border:1px solid var(--jp-border-color2,#e0e0e0);border-radius:3px;padding:6px 8px;margin:4px 0"


def png_css_width(png: bytes, density: int = 2) -> int:
    """CSS width of a PNG drawn at ``density`` (figures here are drawn at 2x): its pixel width / density."""
    return int.from_bytes(png[16:20], "big") // density if png[:8] == b"\x89PNG\r\n\x1a\n" else 0


def png_html(png: bytes, css_width: int, alt: str) -> str:
    """An ``<img>`` of ``png`` drawn at 2x density, shown ``css_width`` CSS pixels wide (and never wider
    than its container)."""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<img class="ms-static-figure" alt="{html.escape(alt)}" width="{int(css_width)}" '
        f'style="max-width:100%;height:auto" src="data:image/png;base64,{data}"/>'
    )


def section(title: str, body: str) -> str:
    """A titled block of a static rendering (a Studio tab, a dashboard part)."""
    return (
        f'<div class="ms-static-section" style="{FRAME}">'
        f'<div style="font-weight:600;margin-bottom:4px">{html.escape(title)}</div>{body}</div>'
    )


def note(text: str) -> str:
    """The line that tells a reader this is a copy of a live widget."""
    style = f"{MUTED};font-size:90%;margin-top:4px"
    return f'<div class="ms-static-note" style="{style}">{html.escape(text)}</div>'


_deferring = threading.local()  # set while a widget's own button runs: refreshes wait for the next cell
_stale: weakref.WeakSet = weakref.WeakSet()
_hooked: list[bool] = []


def _refresh_stale(*_args: Any) -> None:
    """IPython ``pre_run_cell`` hook: refresh the copies that buttons left stale."""
    for widget in list(_stale):
        _stale.discard(widget)
        widget.refresh_static()


def _defer(widget: StaticRendering) -> None:
    _stale.add(widget)
    if _hooked:
        return
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        shell = None
    if shell is not None:
        shell.events.register("pre_run_cell", _refresh_stale)
        _hooked.append(True)


class StaticRendering:
    """Mixin (listed before the ipywidgets base class) giving a widget a static copy in its display bundle.

    Subclasses implement :meth:`static_html` and, for figures, :meth:`static_png`. The bundle is built when
    the widget is displayed and rebuilt by :meth:`refresh_static`; composites register their children with
    :meth:`adopt_static` so that a child's refresh re-renders the composite's copy.
    """

    STATIC_NOTE = "A static copy of an ms-notebook widget; run the notebook to use the widget itself."

    def static_html(self) -> str:
        """HTML for readers without the widget: inline styles only, no scripts."""
        raise NotImplementedError

    def static_png(self) -> bytes | None:
        """The widget's current figure as PNG, or None (most widgets have none)."""
        return None

    def static_text(self) -> str:
        """Plain-text stand-in (terminals, and what IPython prints outside a front end)."""
        return f"{type(self).__name__} (an ms-notebook widget; open the notebook in JupyterLab to use it)"

    # -- the bundle --------------------------------------------------------------------------------------
    def static_bundle(self) -> dict[str, Any]:
        """The full display bundle: the widget view plus the static copies."""
        return self._bundle_and_metadata()[0]

    def _bundle_and_metadata(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if "ms-widget" not in getattr(self, "_dom_classes", ("ms-widget",)):
            # the extension's CSS: reopened without a kernel, one "disconnected" sign and one line per widget
            self.add_class("ms-widget")  # type: ignore[attr-defined]
        view = super()._repr_mimebundle_()  # type: ignore[misc]  # the widget-view bundle
        metadata: dict[str, Any] = {}
        if isinstance(view, tuple):  # anywidget answers (data, metadata)
            view, metadata = view
        bundle: dict[str, Any] = {WIDGET_VIEW: view[WIDGET_VIEW]} if view and WIDGET_VIEW in view else {}
        try:
            bundle["text/html"] = (
                f'<div class="ms-static" data-widget="{type(self).__name__}">{self.static_html()}'
                f"{note(self.STATIC_NOTE)}</div>"
            )
            png = self.static_png()
            if png:
                bundle["image/png"] = base64.b64encode(png).decode("ascii")
                metadata = {**metadata, "image/png": {"width": png_css_width(png)}}
        except Exception as error:  # a static copy must never keep the live widget from showing
            bundle["text/html"] = note(f"(no static copy: {type(error).__name__}: {error})")
        bundle["text/plain"] = self.static_text()
        return bundle, metadata

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> Any:
        bundle, metadata = self._bundle_and_metadata()
        return (bundle, metadata) if metadata else bundle

    def _ipython_display_(self) -> None:
        """Display under a display id, so that :meth:`refresh_static` can update the copy in place."""
        from IPython.display import display

        bundle, metadata = self._bundle_and_metadata()
        handle = display(bundle, metadata=metadata, raw=True, display_id=uuid.uuid4().hex)
        if handle is not None:
            self._static_handles_list().append(handle)

    # -- refreshing ---------------------------------------------------------------------------------------
    def _static_handles_list(self) -> list[Any]:
        handles = self.__dict__.get("_ms_static_handles")
        if handles is None:
            handles = self.__dict__["_ms_static_handles"] = []
        return handles

    def _static_parents(self) -> weakref.WeakSet:
        parents = self.__dict__.get("_ms_static_parents")
        if parents is None:
            parents = self.__dict__["_ms_static_parents"] = weakref.WeakSet()
        return parents

    def adopt_static(self, *children: Any) -> None:
        """Refresh this widget's copy whenever one of ``children`` refreshes its own."""
        for child in children:
            if isinstance(child, StaticRendering):
                child._static_parents().add(self)

    @contextlib.contextmanager
    def deferred_static(self) -> Iterator[None]:
        """Within this block (a button's action), refreshes wait until the next cell runs."""
        before = getattr(_deferring, "on", False)
        _deferring.on = True
        try:
            yield
        finally:
            _deferring.on = before

    def mark_static_stale(self) -> None:
        """The view changed through its own controls: refresh the copy when the next cell runs."""
        with self.deferred_static():
            self.refresh_static()

    def refresh_static(self) -> None:
        """Rebuild the static copy of every display of this widget (and of the composites holding it).

        Cheap when the widget is not displayed on its own: nothing is built for it then. Inside
        :meth:`deferred_static` it only marks the copy stale (refreshed when the next cell runs).
        """
        if getattr(_deferring, "on", False):
            _defer(self)
            for parent in list(self._static_parents()):
                _defer(parent)
            return
        _stale.discard(self)
        handles = self._static_handles_list()
        if handles:
            bundle, metadata = self._bundle_and_metadata()
            for handle in handles:
                handle.update(bundle, metadata=metadata, raw=True)
        for parent in list(self._static_parents()):
            parent.refresh_static()

    @property
    def displayed(self) -> bool:
        """Whether this widget was displayed on its own (it has display ids to refresh)."""
        return bool(self._static_handles_list())
