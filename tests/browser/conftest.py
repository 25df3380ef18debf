"""Browser tests: real Chromium (Debian's, driven by Playwright) against a real `titan up`.

``playwright install`` cannot download browsers here, so the tests drive the system's
Chromium: ``/usr/bin/chromium`` or ``$TITAN_CHROMIUM`` (``make test`` installs Debian's
``chromium`` when it can). Without it the tests are skipped with the reason — except under
``CI=true``, where a missing browser fails them: CI must run them.

Screenshots (the main pages, and the page of any failed test) go to
``tests/browser/artifacts/`` or ``$TITAN_TEST_ARTIFACTS``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI
from tests.integration.harness import Cluster, isolated_cluster

# Read at import: the root conftest clears TITAN_* variables while each test runs.
CHROMIUM = os.environ.get("TITAN_CHROMIUM") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("TITAN_TEST_ARTIFACTS")
                 or Path(__file__).resolve().parent / "artifacts")
#: Playwright's default wait, in ms: generous, the machine may have two cores.
WAIT_MS = 20_000

# Records the time the first element matching the selector is in the page and laid out,
# as ms since navigation start (performance.now()), in window.__firstRender.
FIRST_RENDER_JS = """(selector) => {
  const seen = () => {
    const el = document.querySelector(selector);
    if (!el) return false;
    requestAnimationFrame(() => {
      if (window.__firstRender === undefined) window.__firstRender = performance.now();
    });
    return true;
  };
  if (seen()) return;
  const obs = new MutationObserver(() => { if (seen()) obs.disconnect(); });
  obs.observe(document, {childList: true, subtree: true});
}"""


def first_render_script(selector: str) -> str:
    """An init script (``context.add_init_script``) that sets ``window.__firstRender``."""
    import json

    return f"({FIRST_RENDER_JS})({json.dumps(selector)});"


def _browser_missing() -> str | None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return (f"no Chromium at {CHROMIUM}: install Debian's (`apt-get install "
                "--no-install-recommends chromium`, which `make test` does as root) or set "
                "TITAN_CHROMIUM")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One Chromium for the browser tests (each test gets its own context). Package-scoped,
    not session: Playwright's sync API keeps an asyncio loop marked running in the main
    thread until it stops, and tests that run after these call asyncio.run()."""
    missing = _browser_missing()
    if missing:
        if IN_CI:
            pytest.fail(missing + " — the browser tests are mandatory in CI (CI=true)")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def start_cluster(root: Path, **up: Any) -> Cluster:
    return isolated_cluster(root, **up)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Cluster]:
    """`titan up` (master, dashboard, a local 4-slot worker) shared by a module's tests; each
    test uses DAG names of its own."""
    c = start_cluster(tmp_path_factory.mktemp("browser-cluster"), slots=4)
    try:
        yield c
    finally:
        c.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


class Dashboard:
    """A signed-in browser context on one cluster's dashboard."""

    def __init__(self, browser: Any, cluster: Cluster, init_scripts: list[str]) -> None:
        self.cluster = cluster
        self.base = f"http://127.0.0.1:{cluster.dashboard_port}"
        self.context = browser.new_context(viewport={"width": 1400, "height": 900},
                                           # wait_for_function evaluates its string in the
                                           # page; the dashboard's CSP rightly forbids eval.
                                           bypass_csp=True)
        self.context.set_default_timeout(WAIT_MS)
        for script in init_scripts:
            self.context.add_init_script(script)
        self.page_errors: list[str] = []
        self.pages: list[Any] = []

    def new_page(self) -> Any:
        page = self.context.new_page()
        page.on("pageerror", lambda exc: self.page_errors.append(f"{page.url}: {exc}"))
        page.on("dialog", lambda dialog: dialog.accept())  # a confirm() before an action
        self.pages.append(page)
        return page

    def sign_in(self, page: Any) -> None:
        """``/login?token=`` sets the session cookie and redirects into the dashboard."""
        page.goto(f"{self.base}/login?token={self.cluster.admin_token}")
        page.wait_for_selector("body[data-page]:not([data-page=login])", state="attached")

    def url(self, path: str) -> str:
        return self.base + path

    def cookies(self) -> dict[str, str]:
        return {c["name"]: c["value"] for c in self.context.cookies()}

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def dashboard_factory(browser: Any, request: pytest.FixtureRequest,
                      artifacts: Path) -> Iterator[Callable[..., Dashboard]]:
    made: list[Dashboard] = []
    for stale in artifacts.glob(f"FAILED-{request.node.name}-*.png"):
        stale.unlink(missing_ok=True)

    def make(cluster: Cluster, init_scripts: list[str] | None = None) -> Dashboard:
        d = Dashboard(browser, cluster, init_scripts or [])
        made.append(d)
        return d

    yield make
    failed = getattr(request.node, "rep_call", None)
    for d in made:
        if failed is not None and failed.failed:
            for i, page in enumerate(d.pages):
                if not page.is_closed():
                    try:
                        page.screenshot(path=str(artifacts / f"FAILED-{request.node.name}-{i}.png"),
                                        full_page=True)
                    except Exception:  # the page may be what broke
                        pass
        d.close()
    errors = [e for d in made for e in d.page_errors]
    if errors:
        pytest.fail("uncaught JavaScript errors in the dashboard:\n" + "\n".join(errors))


@pytest.fixture
def dash(dashboard_factory: Callable[..., Dashboard], cluster: Cluster) -> Dashboard:
    """A signed-in dashboard on the module's cluster."""
    return dashboard_factory(cluster)


@pytest.fixture
def page(dash: Dashboard) -> Any:
    """A signed-in page of the module's cluster's dashboard."""
    p = dash.new_page()
    dash.sign_in(p)
    return p
