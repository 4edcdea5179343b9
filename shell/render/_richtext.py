"""Readable terminal text from ``text/html`` and ``text/markdown`` outputs.

Not a browser: tags are dropped, but the structure a reader needs survives —
paragraphs and line breaks, headings (underlined), list items (bulleted or
numbered), preformatted blocks (kept verbatim), table rows (cells separated
by `` | ``), and link targets (``text <url>``). Script and style contents
are dropped. Standard library only (``html.parser``).
"""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

__all__ = ["html_to_text", "markdown_to_text"]

_BLOCK = {
    "p", "div", "section", "article", "header", "footer", "blockquote", "table",
    "ul", "ol", "dl", "dt", "dd", "figure", "figcaption", "main", "nav", "form", "hr",
}  # fmt: skip
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_SKIP = {"script", "style", "head", "title"}


class _TextBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._lists: list[list[int]] = []  # per open list: [next number] or [] for bullets
        self._skip = 0
        self._pre = 0
        self._heading: str | None = None
        self._heading_start = 0
        self._href: str | None = None
        self._cells = 0

    def _newline(self, count: int = 1) -> None:
        """End the current line; ``count=2`` also leaves a blank line.

        Breaks do not add up (a list starting a paragraph is not two blank
        lines away), and nothing is emitted before the first text.
        """
        have = 0
        for part in reversed(self.parts):
            content = part.rstrip(" \t\n")
            have += part[len(content) :].count("\n")
            if content:
                break
        else:
            return
        if have < count:
            self.parts.append("\n" * (count - have))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
        elif tag == "br":
            self._newline()
        elif tag == "pre":
            self._pre += 1
            self._newline(2)
        elif tag in _HEADINGS:
            self._newline(2)
            self._heading, self._heading_start = tag, len(self.parts)
        elif tag in ("ul", "ol"):
            self._lists.append([1] if tag == "ol" else [])
            self._newline()
        elif tag == "li":
            self._newline()
            depth = max(len(self._lists) - 1, 0)
            counter = self._lists[-1] if self._lists else []
            if counter:
                bullet = f"{counter[0]}. "
                counter[0] += 1
            else:
                bullet = "• "
            self.parts.append("\xa0\xa0" * depth + bullet)
        elif tag == "tr":
            self._newline()
            self._cells = 0
        elif tag in ("td", "th"):
            if self._cells:
                self.parts.append(" | ")
            self._cells += 1
        elif tag == "a":
            self._href = dict(attrs).get("href")
        elif tag in _BLOCK:
            self._newline(2)
        if tag == "hr":
            self.parts.append("-" * 40)
            self._newline()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(self._skip - 1, 0)
        elif tag == "pre":
            self._pre = max(self._pre - 1, 0)
            self._newline(2)
        elif tag in _HEADINGS and self._heading == tag:
            title = "".join(self.parts[self._heading_start :]).strip()
            rule = "=" if tag == "h1" else "-"
            self.parts.append("\n" + rule * min(len(title), 79))
            self._heading = None
            self._newline(2)
        elif tag in ("ul", "ol"):
            if self._lists:
                self._lists.pop()
            self._newline()
        elif tag == "tr":
            self._newline()
        elif tag == "a":
            if self._href and not self._href.startswith(("#", "javascript:")):
                self.parts.append(f" ({self._href})")
            self._href = None
        elif tag in _BLOCK:
            self._newline(2)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._pre:
            self.parts.append(data.replace(" ", "\xa0"))
        else:
            self.parts.append(re.sub(r"\s+", " ", data))

    def text(self) -> str:
        """The text so far, with single blank lines between blocks."""
        out: list[str] = []
        for raw in "".join(self.parts).split("\n"):
            # Whitespace we mean to keep (list indentation, <pre> contents) was
            # written as NO-BREAK SPACE, so other leading/trailing spaces (left
            # over from collapsing the source's whitespace) can go.
            line = raw.strip(" \t").replace("\xa0", " ").rstrip()
            if line or (out and out[-1]):
                out.append(line)
        return "\n".join(out).strip("\n")


def html_to_text(source: str) -> str:
    """Render an HTML fragment as plain text (see the module docstring)."""
    builder = _TextBuilder()
    builder.feed(source)
    builder.close()
    return builder.text()


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_MD_BULLET = re.compile(r"^(\s*)[-*+]\s+")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_MD_EMPHASIS = re.compile(r"(\*\*|__)(.+?)\1|(?<![\w*])([*_])(?!\s)(.+?)(?<!\s)\3(?![\w*])")
_MD_CODE = re.compile(r"`([^`]+)`")
# Inline HTML a Markdown renderer would pass through (not autolinks like <http://...>).
_MD_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(\s[^<>]*)?/?>")


def markdown_to_text(source: str) -> str:
    """Render Markdown as plain text: markers go, structure stays.

    Headings are underlined, bullets become ``•``, emphasis and inline-code
    markers are dropped, links read ``text (url)``, fenced code is kept
    verbatim (indented, without the fences), and inline HTML tags are dropped.
    """
    out: list[str] = []
    fenced = False
    for line in source.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if fenced:
            out.append("    " + line)
            continue
        heading = _MD_HEADING.match(line)
        if heading:
            title = _inline(heading.group(2))
            rule = "=" if len(heading.group(1)) == 1 else "-"
            out.extend([title, rule * min(len(title), 79)])
            continue
        line = _MD_BULLET.sub(lambda m: m.group(1) + "• ", line)
        out.append(_inline(line))
    return "\n".join(out).strip("\n")


def _inline(text: str) -> str:
    text = _MD_TAG.sub("", text)
    text = _MD_CODE.sub(r"\1", text)
    text = _MD_LINK.sub(lambda m: m.group(1) + (f" ({m.group(2)})" if m.group(1) else ""), text)
    text = _MD_EMPHASIS.sub(lambda m: m.group(2) or m.group(4), text)
    return unescape(text)
