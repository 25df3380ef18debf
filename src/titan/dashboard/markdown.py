"""Markdown to HTML for the docs pages: CommonMark and tables, raw HTML shown as text,
GitHub's heading anchors, and links between docs pages pointed at their ``/docs`` route.

Every page is treated as hostile input, although the ones shipped are ours: raw HTML in the
Markdown is escaped like any text (``html`` off), markdown-it refuses ``javascript:``,
``vbscript:``, ``file:`` and non-image ``data:`` links, and attribute values go through its
escaping. What comes out is the only HTML the dashboard inserts unescaped.

Anchors follow GitHub's rule (lower case, punctuation dropped, each space a hyphen, ``-1``,
``-2``… for repeats), so a link such as ``api.md#dashboard-sessions`` works on GitHub and on
the dashboard alike, and ``/docs/troubleshooting#agent-timeout`` reaches the heading
"Agent timeout".
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token

ROUTE = "/docs"
SUMMARY_CHARS = 240
# What GitHub keeps of a heading's text: letters, digits and "_" (\w is Unicode-aware), "-"
# and spaces.
_DROPPED = re.compile(r"[^\w\- ]")

_md = MarkdownIt("commonmark", {"html": False}).enable("table")


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    anchor: str


@dataclass(frozen=True)
class Page:
    """One rendered page: its title (the first ``#`` heading), the text of its first
    paragraph, the HTML, and its headings in order."""

    title: str
    summary: str
    html: str
    headings: tuple[Heading, ...]


def slug(text: str) -> str:
    """GitHub's anchor for a heading's text (before repeats are numbered)."""
    return _DROPPED.sub("", text.lower()).replace(" ", "-")


class _Anchors:
    """Numbers repeated anchors the way GitHub does: ``x``, ``x-1``, ``x-2``."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def take(self, text: str) -> str:
        base = result = slug(text)
        while result in self.seen:
            self.seen[base] += 1
            result = f"{base}-{self.seen[base]}"
        self.seen[result] = 0
        return result


def link_target(href: str, pages: frozenset[str]) -> str | None:
    """Where a link written in a docs page points on the dashboard: ``foo.md#x`` (a page
    shipped beside it) becomes ``/docs/foo#x``; a URL, an absolute path or a fragment stays as
    written; any other relative link — a file of the source tree, which the dashboard does not
    serve — is None (its text is kept, without the link)."""
    parts = urlsplit(href)
    if parts.scheme or parts.netloc or href.startswith(("/", "#")):
        return href
    name = parts.path.removeprefix("./")
    if name.endswith(".md") and name[:-3] in pages:
        fragment = f"#{parts.fragment}" if parts.fragment else ""
        return f"{ROUTE}/{name[:-3]}{fragment}"
    return None


def _text(children: Sequence[Token] | None) -> str:
    """The plain text of inline tokens, as a reader sees it (and as GitHub slugs it)."""
    out = []
    for child in children or ():
        if child.type in ("text", "code_inline"):
            out.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            out.append(" ")
        elif child.children:
            out.append(_text(child.children))
    return "".join(out)


def _links(children: list[Token], pages: frozenset[str]) -> None:
    dropped = False
    for child in children:
        if child.type == "link_open":
            target = link_target(str(child.attrGet("href") or ""), pages)
            dropped = target is None
            if dropped:
                child.tag, child.attrs = "span", {}
            else:
                child.attrSet("href", str(target))
        elif child.type == "link_close" and dropped:
            # CommonMark links do not nest: the next close is the dropped link's.
            child.tag, dropped = "span", False


def _heading_close(self: Any, tokens: Sequence[Token], idx: int, options: Any,
                   env: Any) -> str:
    # A link to the heading itself, so a reader can copy the section's address.
    anchor = html.escape(str(tokens[idx].meta.get("anchor", "")))
    return (f' <a class="anchor" href="#{anchor}" aria-label="Link to this section">#</a>'
            f"</{tokens[idx].tag}>\n")


_md.add_render_rule("heading_close", _heading_close)


@lru_cache(maxsize=64)
def render(text: str, pages: frozenset[str]) -> Page:
    """Render one page; ``pages`` names the pages shipped beside it (links to them are
    rewritten to their routes). Cached: the shipped pages do not change while a master runs,
    and a page edited in a checkout is new text, so it is rendered again."""
    tokens = _md.parse(text)
    anchors = _Anchors()
    headings: list[Heading] = []
    summary = ""
    for i, token in enumerate(tokens):
        if token.type == "inline" and token.children:
            _links(token.children, pages)
        if token.type == "heading_open":
            words = _text(tokens[i + 1].children).strip()
            anchor = anchors.take(words)
            token.attrSet("id", anchor)
            tokens[i + 2].meta["anchor"] = anchor
            headings.append(Heading(int(token.tag[1]), words, anchor))
        elif token.type == "paragraph_open" and not summary and token.level == 0:
            summary = " ".join(_text(tokens[i + 1].children).split())
    if len(summary) > SUMMARY_CHARS:
        summary = summary[:SUMMARY_CHARS].rsplit(" ", 1)[0] + " …"
    title = next((h.text for h in headings if h.level == 1), "")
    body = _md.renderer.render(tokens, _md.options, {})
    return Page(title, summary, body, tuple(headings))
