"""Python source as highlighted HTML (Pygments tokens, inline styles): the code pane and static copies.

Inline styles with JupyterLab's editor colour variables, so the colours follow the light and dark themes in
the live pane and survive the HTML sanitizer in a saved copy (fallbacks: JupyterLab's light theme).
"""

from __future__ import annotations

import html

from pygments import lex
from pygments.lexers import PythonLexer
from pygments.token import Comment, Keyword, Name, Number, Operator, String, _TokenType

_STYLES: list[tuple[_TokenType, str]] = [
    (Comment, "color:var(--jp-mirror-editor-comment-color,#408080);font-style:italic"),
    (Keyword, "color:var(--jp-mirror-editor-keyword-color,#008000);font-weight:bold"),
    (String, "color:var(--jp-mirror-editor-string-color,#ba2121)"),
    (Number, "color:var(--jp-mirror-editor-number-color,#008800)"),
    (Name.Builtin, "color:var(--jp-mirror-editor-builtin-color,#008000)"),
    (Name.Function, "color:var(--jp-mirror-editor-def-color,#0000ff)"),
    (Name.Class, "color:var(--jp-mirror-editor-def-color,#0000ff)"),
    (Operator, "color:var(--jp-mirror-editor-operator-color,#aa22ff)"),
]


def _style(token: _TokenType) -> str | None:
    for kind, style in _STYLES:
        if token in kind:
            return style
    return None


def highlight(code: str) -> str:
    """``code`` as HTML spans (no ``<pre>``): escaped text, coloured by token kind."""
    out = []
    for token, text in lex(code, PythonLexer()):
        style = _style(token)
        escaped = html.escape(text)
        out.append(f'<span style="{style}">{escaped}</span>' if style else escaped)
    return "".join(out)
