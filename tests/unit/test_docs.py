"""Docs are tested: an undocumented route, CLI command or setting fails the build."""

from __future__ import annotations

import re
import sys
from pathlib import Path

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
        names.update(re.findall(r"\bTITAN_[A-Z_]+[A-Z]\b", path.read_text()))
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
