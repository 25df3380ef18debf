"""The docs pages: ``/docs`` (every page) and ``/docs/<page>`` (one of the project's
``docs/*.md``, rendered in the dashboard's layout), each also served as ``<path>.json``.

The Markdown ships inside the package: ``titan/docs`` is a link to the checkout's ``docs/``
(an editable install reads them there) that a wheel stores as plain files (pyproject's
package-data), so an installed master serves the docs of its own version, offline.

Anyone may read them, signed in or not: they hold nothing the public repository does not, and
the readers who need them most — someone whose sign-in fails, an agent's author working out
why it cannot reach the master — may have no session. A visitor who is signed in sees the
usual header. ``pages.py`` adds ``router.routes`` to its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from titan.dashboard import markdown
from titan.dashboard.render import Data, html, reader
from titan.errors import APIError, NotFound
from titan.master.auth import tokens as auth

router = APIRouter()
DOCS: Traversable = resources.files("titan") / "docs"
# Page names as the route takes them: nothing that could leave the folder or need quoting.
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def page_names() -> frozenset[str]:
    if not DOCS.is_dir():  # an install without its docs: every page is a 404, not a 500
        return frozenset()
    return frozenset(p.name[:-3] for p in DOCS.iterdir()
                     if p.name.endswith(".md") and _NAME.match(p.name[:-3]))


def href(name: str) -> str:
    return f"{markdown.ROUTE}/{name}"


def rendered(name: str, names: frozenset[str]) -> markdown.Page:
    """One shipped page, rendered; 404 for a name that is not one."""
    if name not in names:
        raise NotFound(f"no docs page {name[:80]!r}", details={"page": name[:80]})
    return markdown.render((DOCS / f"{name}.md").read_text("utf-8"), names)


def _listing(names: frozenset[str]) -> list[Data]:
    out = []
    for name in sorted(names):
        page = rendered(name, names)
        out.append({"name": name, "title": page.title or name, "summary": page.summary,
                    "href": href(name)})
    return out


def docs_index() -> Data:
    """Every page: its name, title, first paragraph and address."""
    return {"pages": _listing(page_names())}


def docs_page(name: str) -> Data:
    """One page: its HTML and headings (with their anchors), and the list of pages."""
    names = page_names()
    page = rendered(name, names)
    return {"name": name, "title": page.title or name, "html": page.html,
            "headings": [{"level": h.level, "text": h.text, "anchor": h.anchor}
                         for h in page.headings],
            "pages": _listing(names)}


async def _visitor(request: Request) -> auth.Principal | None:
    """Who is reading, when they are signed in; anyone else reads as a visitor."""
    try:
        return await reader(request)
    except APIError:
        return None


def _register(path: str, page: str, build: Callable[[Request], Data]) -> None:
    async def as_json(request: Request) -> JSONResponse:
        data = await run_in_threadpool(build, request)
        return JSONResponse(data)

    async def as_html(request: Request) -> Response:
        # The app's one error handler draws a 404 here as the error page; it reads the page
        # and the visitor from request.state for the header around the message.
        request.state.page = page
        p = request.state.principal = await _visitor(request)
        # Rendering reads files and may take milliseconds: off the event loop.
        data = await run_in_threadpool(build, request)
        return html(request, "docs.html", data, page, p)

    # The twin first: "/docs/{page}.json" must win over "/docs/{page}".
    router.add_api_route(path + ".json", as_json, methods=["GET"], include_in_schema=False)
    router.add_api_route(path, as_html, methods=["GET"], include_in_schema=False,
                         response_class=HTMLResponse)


_register(markdown.ROUTE, "docs", lambda request: docs_index())
_register(markdown.ROUTE + "/{page}", "docs",
          lambda request: docs_page(request.path_params["page"]))
