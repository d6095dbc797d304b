"""Safe HTML from untrusted text: escaping, a tiny Markdown subset, and a table sanitizer.

Everything a stage reports is treated as untrusted: Markdown is escaped first and only
then given a handful of tags (headings, emphasis, code, lists, paragraphs; no links, no
images, no raw HTML), and the HTML of a DataFrame table is re-emitted keeping only table
tags and their text.
"""

from __future__ import annotations

import functools
import re
from typing import Any

__all__ = ["esc", "markdown", "png_data_uri", "sanitize_table"]

_TABLE_TAGS = frozenset({"table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption"})


def _escape_text(text: str) -> str:
    # what html.escape(text, quote=True) does, without importing html (and its entity tables)
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#x27;"))


_escape = functools.lru_cache(maxsize=8192)(_escape_text)


def esc(value: object) -> str:
    """HTML-escape ``str(value)``, quotes included (memoized: reports repeat names a lot)."""
    text = str(value)
    return _escape(text) if len(text) < 200 else _escape_text(text)


def _inline(text: str) -> str:
    """Escaped text with `code`, **bold** and *italic*."""
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for part in parts:
        if len(part) > 1 and part.startswith("`") and part.endswith("`"):
            out.append(f"<code>{esc(part[1:-1])}</code>")
            continue
        escaped = esc(part)
        escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
        escaped = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", escaped)
        out.append(escaped)
    return "".join(out)


def markdown(text: str) -> str:
    """Render a small, safe subset of Markdown to HTML."""
    blocks: list[str] = []
    paragraph: list[str] = []
    items: list[str] = []
    lines = text.replace("\r\n", "\n").split("\n")

    def close() -> None:
        if paragraph:
            blocks.append("<p>" + " ".join(_inline(line) for line in paragraph) + "</p>")
            paragraph.clear()
        if items:
            blocks.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in items) + "</ul>")
            items.clear()

    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        if stripped.startswith("```"):
            close()
            code = []
            index += 1
            while index < len(lines) and not lines[index].strip().startswith("```"):
                code.append(lines[index])
                index += 1
            blocks.append(f"<pre><code>{esc(chr(10).join(code))}</code></pre>")
        elif match := re.match(r"^(#{1,6})\s+(.*)$", stripped):
            close()
            level = min(len(match.group(1)) + 2, 6)  # the report's own headings sit above
            blocks.append(f"<h{level}>{_inline(match.group(2))}</h{level}>")
        elif match := re.match(r"^[-*+]\s+(.*)$", stripped):
            if paragraph:
                close()
            items.append(match.group(1))
        elif not stripped:
            close()
        else:
            if items:
                close()
            paragraph.append(stripped)
        index += 1
    close()
    return "\n".join(blocks)


def _table_filter() -> object:
    from html.parser import HTMLParser  # only reports with tables need it

    class TableFilter(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.out: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag in _TABLE_TAGS:
                span = "".join(f' {name}="{int(value)}"' for name, value in attrs
                               if name in ("colspan", "rowspan") and value and value.isdigit())
                self.out.append(f"<{tag}{span}>")

        def handle_endtag(self, tag: str) -> None:
            if tag in _TABLE_TAGS:
                self.out.append(f"</{tag}>")

        def handle_data(self, data: str) -> None:
            self.out.append(esc(data))

    return TableFilter()


def sanitize_table(fragment: str) -> str:
    """Keep only the table structure and cell text of an HTML fragment (e.g. ``DataFrame.to_html``)."""
    parser: Any = _table_filter()
    parser.feed(fragment)
    parser.close()
    body = "".join(parser.out)
    return body if body.lstrip().startswith("<table") else f"<table>{body}</table>"


def png_data_uri(data: str) -> str:
    """A ``data:`` URI for base64 PNG data, or "" when the data is not valid base64 PNG."""
    import base64
    import binascii

    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return ""
    if not raw.startswith(b"\x89PNG\r\n\x1a\n"):
        return ""
    return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")
