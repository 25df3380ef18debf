"""Every docs link the dashboard emits lands on a page that exists, at an anchor it has.

The links are collected where they are made — the templates and scripts (``/docs/...``
literals), the failure-mode chips (every error class), the determinism findings (every kind
of advice) — and the docs pages' own links to each other, so a renamed heading or page fails
here instead of leaving a reader at the top of the wrong page.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from titan.dashboard import docs_pages
from titan.dashboard.render import STATIC
from titan.evals.failures import ERROR_CLASSES, FAILURE_MODES
from titan.master.evaluations.views import chip
from titan.trace.determinism.findings import ADVICE, docs_link, make, recommendations

TEMPLATES = Path(docs_pages.__file__).parent / "templates"
LITERAL = re.compile(r"""(/docs/[a-z0-9_-]+(?:#[A-Za-z0-9_-]+)?)(?=["'`\s)<])""")


def _literals() -> dict[str, str]:
    found = {}
    # Sorted, first source kept: xdist's workers must collect the same parameters.
    for path in sorted([*TEMPLATES.glob("*.html"), *STATIC.glob("*.js")]):
        for link in LITERAL.findall(path.read_text()):
            found.setdefault(link, path.name)
    return found


def _page_links() -> dict[str, str]:
    found = {}
    for name in sorted(docs_pages.page_names()):
        for href in re.findall(r'href="(/docs/[^"]*)"', docs_pages.docs_page(name)["html"]):
            found.setdefault(href, f"{name}.md")
    return found


def emitted() -> dict[str, str]:
    """Every docs link, and where it comes from."""
    links = _literals()
    assert links, "no /docs/ link in the templates or scripts: is the walk still looking?"
    for name in ERROR_CLASSES:
        row = chip(name)
        assert row is not None
        links[row["docs"]] = f"the {name} chip"
    links[FAILURE_MODES] = "the chip of an unknown error class"
    for kind in ADVICE:
        links[docs_link(kind)] = f"the {kind} finding"
    return links | _page_links()


def _anchors(page: str) -> set[str]:
    return {h["anchor"] for h in docs_pages.docs_page(page)["headings"]}


@pytest.mark.parametrize("link,origin", sorted(emitted().items()))
def test_every_docs_link_resolves(link: str, origin: str) -> None:
    parts = urlsplit(link)
    page = parts.path.removeprefix("/docs/")
    assert page in docs_pages.page_names(), f"{origin} links to {link}: no page {page!r}"
    if parts.fragment:
        assert parts.fragment in _anchors(page), \
            f"{origin} links to {link}: {page}.md has no heading with that anchor"


def test_findings_and_recommendations_carry_their_docs_link() -> None:
    finding = make("wall_clock", "high", "datetime.now()", file="a.py", line=3)
    assert finding.to_dict()["docs"] == "/docs/determinism#wall-clock"
    assert recommendations([finding])[0]["docs"] == "/docs/determinism#wall-clock"


def test_each_determinism_section_shows_its_before_and_after() -> None:
    """The section a finding links to shows the same fix as the finding itself."""
    text = (docs_pages.DOCS / "determinism.md").read_text()
    sections = dict(re.findall(r"^### [^\n]*\n\n\*\*`([a-z_]+)` — (.*?)(?=^### |^## |\Z)", text,
                               re.M | re.S))
    assert set(sections) == set(ADVICE), "one section per kind of finding"
    for kind, advice in ADVICE.items():
        for snippet in (advice.before, advice.after):
            assert snippet in sections[kind], f"{kind}: the section lacks {snippet!r}"


def test_the_docs_ship_inside_the_package() -> None:
    """The pages the dashboard serves are the checkout's docs/, and a wheel carries them: the
    package's docs/ is a link to it and pyproject's package-data names its pages (a wheel
    built with `pip wheel .` stores them as titan/docs/*.md)."""
    import tomllib

    root = Path(__file__).resolve().parents[2]
    package_docs = root / "src" / "titan" / "docs"
    assert package_docs.is_symlink() and package_docs.resolve() == (root / "docs").resolve()
    data = tomllib.loads((root / "pyproject.toml").read_text())
    assert "docs/*.md" in data["tool"]["setuptools"]["package-data"]["titan"]
    assert any(d.startswith("markdown-it-py") for d in data["project"]["dependencies"])
    assert docs_pages.page_names() == {p.stem for p in (root / "docs").glob("*.md")}


#: Every example path the seeds give, as they spell it (seed 001's run commands, seed 002's
#: list of examples): each must work from the repository's root.
SEED_PATHS = (
    "titan_test_suite/examples/agents_examples/research_agent/research_agent.py",
    "titan_test_suite/examples/agents_example/code_healer_agent.py",
    "titan_test_suite/examples/agents_exampels/doc_generator_agent/tools/doc_dispatcher.py",
    "titan_test_suite/examples/dynamic_dag_custom/dynamic_dag_switch",
    "titan_test_suite/examples/worker_skill_based_test/gpu_project_test",
)


@pytest.mark.parametrize("path", SEED_PATHS)
def test_the_seeds_example_paths_work_from_the_repository_root(path: str) -> None:
    assert (Path(__file__).resolve().parents[2] / path).exists(), path
