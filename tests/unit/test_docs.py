"""Docs are tested: an undocumented route, CLI command or setting fails the build."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from titan.master.app import create_app
from titan.master.config import MasterConfig

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def test_every_api_route_is_documented() -> None:
    # Parameter names may differ between code and prose ({worker_id} vs {id}): compare shapes.
    def shape(text: str) -> str:
        return re.sub(r"\{[^}]*\}", "{}", text)

    api_md = shape((DOCS / "api.md").read_text())
    app = create_app(MasterConfig())
    missing, checked = [], 0
    for route in app.routes:
        path = getattr(route, "path", "")
        if path.startswith("/api/v1/docs") or path.endswith("openapi.json"):
            continue
        if not path.startswith("/api/") and path != "/mcp":  # the MCP endpoint, at the root
            continue
        # /api/v1 routes are written relative to it; others (seed 003's /api/projects) whole.
        documented = shape(path.removeprefix("/api/v1") if path.startswith("/api/v1/") else path)
        # A WebSocket route has no HTTP methods: the docs name it "WS /path".
        for method in sorted((getattr(route, "methods", None) or {"WS"}) - {"HEAD"}):
            checked += 1
            if f"{method} {documented}" not in api_md:
                missing.append(f"{method} {documented}")
    assert checked > 30, "the route walk found too few routes: is it still looking?"
    assert not missing, f"routes missing from docs/api.md: {missing}"


def test_cli_reference_matches_help() -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gen_cli_docs
    finally:
        sys.path.pop(0)
    assert (DOCS / "cli.md").read_text() == gen_cli_docs.render(), "run `make docs`"


def test_every_environment_setting_is_documented() -> None:
    names: set[str] = set()
    for path in (ROOT / "src").rglob("*.py"):
        # Digits too: TITAN_S3_ENDPOINT_URL was never matched, so never checked.
        names.update(re.findall(r"\bTITAN_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    text = "".join(p.read_text() for p in DOCS.glob("*.md"))
    missing = sorted(n for n in names if n not in text)
    assert not missing, f"environment variables missing from docs/: {missing}"


def test_the_architecture_page_names_every_module() -> None:
    """docs/architecture.md is the map: a module it does not name is a room missing from it."""
    text = (DOCS / "architecture.md").read_text()
    src = ROOT / "src" / "titan"
    modules = [p.relative_to(src).as_posix() for p in src.rglob("*.py") if p.name != "__init__.py"]
    assert len(modules) > 100, "the walk found too few modules: is it still looking?"
    missing = sorted(m for m in modules if f"`{m}`" not in text)
    assert not missing, f"modules missing from docs/architecture.md: {missing}"
    gone = sorted(m for m in re.findall(r"^- `([a-z_/]+\.py)` — ", text, re.M)
                  if not (src / m).exists())
    assert not gone, f"docs/architecture.md names modules that no longer exist: {gone}"


def test_the_standby_masters_command_shares_one_blob_store() -> None:
    """deployment.md's command "on each of m1, m2, m3": a second master started with it alone
    refuses to start (its own blob directory lacks the leader's mark), so the command as
    written names a store every master shares, as the systemd unit and compose file do."""
    page = (DOCS / "deployment.md").read_text()
    section = page.split("## Standby masters", 1)[1].split("\n## ", 1)[0]
    command = section.split("```bash\n", 1)[1].split("```", 1)[0]
    assert "titan master" in command, command
    assert re.search(r"TITAN_BLOB_STORE=(database|s3://)|TITAN_BLOB_DIR=", command), command


def _doc_texts() -> dict[str, str]:
    """The pages a reader follows (README included); not cli.md, generated from the parser."""
    pages = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]
    return {p.name: p.read_text() for p in pages if p.name != "cli.md"}


def test_every_environment_setting_the_docs_name_exists() -> None:
    """The other way round from the test above: a `TITAN_*` the docs tell a reader to set
    that no code reads (renamed, removed, misspelt) is a setting silently ignored."""
    pattern = re.compile(r"\bTITAN_[A-Z0-9_]*[A-Z0-9]\b")
    names: set[str] = set()
    for tree in ("src", "tests"):  # TITAN_TEST_POSTGRES_URL is the tests' own
        for path in (ROOT / tree).rglob("*.py"):
            names.update(pattern.findall(path.read_text()))
    named = {n: page for page, text in _doc_texts().items() for n in pattern.findall(text)}
    assert len(named) > 50, "the walk found too few names: is it still looking?"
    ghosts = sorted(f"{n} ({page})" for n, page in named.items() if n not in names)
    assert not ghosts, f"the docs name settings no code reads: {ghosts}"


def _subcommands(parser: Any) -> dict[str, Any]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_flag_a_documented_command_uses_exists() -> None:
    """`titan master --advertise-url ...` written in a page (inline code or a code block,
    `\\` continuations joined) names the flags of that very command: one it does not have
    would stop the reader at `unrecognized arguments`. A script's own arguments (after
    `--`) and comments are not the command's."""
    from titan.cli import build_parser

    root = build_parser()
    checked, wrong = 0, []
    for page, text in _doc_texts().items():
        text = text.replace("\\\n", " ")
        spans = re.findall(r"`([^`\n]+)`", text)
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
            spans += block.splitlines()
        for span in spans:
            for m in re.finditer(r"(?:^|[\s(;&|=$])titan((?:\s+[^\s;&|)]+)+)", span):
                words, parser, path = m.group(1).split(), root, ["titan"]
                while words and words[0] in _subcommands(parser):
                    parser = _subcommands(parser)[words[0]]
                    path.append(words.pop(0))
                if len(path) == 1:  # `from titan import ...`, `ALTER ROLE titan ...`
                    continue
                flags = {o for a in parser._actions for o in a.option_strings}
                for word in words:
                    if word.startswith("#") or word == "--":
                        break
                    if re.fullmatch(r"--[a-z][a-z0-9-]*(=.*)?", word):
                        checked += 1
                        if word.split("=")[0] not in flags:
                            wrong.append(f"{page}: {' '.join(path)} {word.split('=')[0]}")
    assert checked > 80, "the walk found too few flags: is it still looking?"
    assert not wrong, f"the docs use flags these commands do not have: {sorted(set(wrong))}"


def test_every_docs_page_the_code_names_exists() -> None:
    """Error messages and comments send the reader to `docs/<page>.md#<anchor>`: a page
    renamed or a heading reworded leaves them pointing nowhere."""
    from titan.dashboard import docs_pages

    wrong, checked = [], 0
    for path in sorted((ROOT / "src").rglob("*.py")):
        for page, anchor in re.findall(r"\bdocs/([a-z_]+)\.md(?:#([A-Za-z0-9_-]+))?",
                                       path.read_text()):
            checked += 1
            where = f"{path.relative_to(ROOT)}: docs/{page}.md{'#' + anchor if anchor else ''}"
            if page not in docs_pages.page_names():
                wrong.append(f"{where} (no such page)")
            elif anchor and anchor not in {h["anchor"]
                                           for h in docs_pages.docs_page(page)["headings"]}:
                wrong.append(f"{where} (no such heading)")
    assert checked > 20, "the walk found too few references: is it still looking?"
    assert not wrong, f"the code names docs that do not exist: {wrong}"
