"""Acceptance: Titan as `pip install` gives it, not as the checkout runs it.

The checkout's code reads files beside it at run time — the dashboard's templates and static
assets, its /docs pages (titan/docs, a link to docs/), the judge's calibration set, the
replay driver, py.typed — and a wheel carries only what pyproject's package-data names. A
file missing there passes every other test (they run the editable checkout) and breaks each
installed copy. So: the sdist and wheels are built from a copy of the checkout's sources as
`python -m build` (sdist, then a wheel from it) and `pip install /path/to/titan` (a wheel from
the tree) build them, every file the packages hold must be in each, and a master run from the
installed wheel, outside the checkout, must serve every page with its assets. The sdist is
also what a user downloads: it must carry the examples and the docs its README names.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("titan", "titan_sdk")
#: What a build reads: the packages (titan/docs a link into docs/) and the project's files.
SOURCES = ("src", "docs", "examples", "pyproject.toml", "MANIFEST.in", "README.md", "LICENSE")
#: Folders beside the packages that the sdist carries whole (MANIFEST.in).
BESIDE = ("examples", "docs")
#: What running the examples leaves in a checkout: never shipped (MANIFEST.in, .gitignore).
LEFT_BEHIND = ("__pycache__", "titan_workspace", ".titan")
#: The dashboard's pages with no id in their address (docs/dashboard.md's table).
PAGES = ("/", "/workers", "/dags", "/dags/new", "/schedules", "/agents", "/runs", "/ledger",
         "/store", "/docs", "/projects", "/evaluations")

pytestmark = pytest.mark.slow


def shipped_files() -> set[str]:
    """Every file of the packages in the checkout, as a wheel names it (``titan/...``),
    titan/docs followed into docs/; Python's caches aside."""
    found = set()
    for package in PACKAGES:
        for folder, dirs, files in os.walk(ROOT / "src" / package, followlinks=True):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                if not name.endswith(".pyc"):
                    found.add((Path(folder) / name).relative_to(ROOT / "src").as_posix())
    return found


def _backend(step: str, source: Path, out: Path) -> Path:
    """Build with pyproject's backend, in this interpreter (no isolation: nothing is
    downloaded), as `python -m build` and pip call it."""
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", f"import sys; from setuptools import build_meta as b; "
         f"print('BUILT', b.{step}(sys.argv[1]))", str(out)],
        cwd=source, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, (
        f"{step} failed (the dev environment needs pyproject's build-system setuptools: "
        f"pip install -e '.[dev]'):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    (name,) = re.findall(r"^BUILT (\S+)$", done.stdout, re.M)
    return out / name


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist, the wheel built from it (`python -m build`) and the wheel built from the
    tree (`pip install /path/to/titan`), from a copy of the sources: a build writes build/
    and *.egg-info beside them, which the checkout keeps out of."""
    root = tmp_path_factory.mktemp("wheel")
    tree = root / "tree"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, tree / name, symlinks=True, ignore=shutil.ignore_patterns(
                "__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, tree / name)
    sdist = _backend("build_sdist", tree, root / "dist")
    with tarfile.open(sdist) as tar:
        # (our own archive; the filter where this Python has it, 3.11.4 on)
        tar.extractall(root / "unpacked", **({"filter": "data"} if hasattr(
            tarfile, "data_filter") else {}))
    (unpacked,) = (root / "unpacked").iterdir()
    return {"sdist": sdist, "unpacked": unpacked,
            "wheel": _backend("build_wheel", unpacked, root / "from-sdist"),
            "tree wheel": _backend("build_wheel", tree, root / "from-tree")}


def test_the_sdist_and_wheels_carry_every_file_the_packages_hold(
        built: dict[str, Path]) -> None:
    expected = shipped_files()
    # What the code loads by path at run time is among them (a package-data glob that
    # matched nothing would leave this set short, not the packages).
    for loaded in ("titan/dashboard/templates/base.html", "titan/dashboard/static/style.css",
                   "titan/docs/dashboard.md", "titan/evals/calibration/support.yaml",
                   "titan/evals/calibration/README.md", "titan/trace/replay_driver.py",
                   "titan/evals/coding_job.py", "titan/py.typed", "titan_sdk/py.typed"):
        assert loaded in expected, loaded
    with tarfile.open(built["sdist"]) as tar:
        in_sdist = {n.split("/", 2)[2] for n in tar.getnames() if n.count("/") >= 2
                    and n.split("/", 2)[1] == "src"}
    assert not expected - in_sdist, sorted(expected - in_sdist)
    for kind in ("wheel", "tree wheel"):
        with zipfile.ZipFile(built[kind]) as whl:
            names = set(whl.namelist())
            entry_points = next(whl.read(n).decode() for n in names
                                if n.endswith(".dist-info/entry_points.txt"))
        assert not expected - names, (kind, sorted(expected - names))
        assert "titan = titan.cli:main" in entry_points, entry_points


def beside_files() -> set[str]:
    """Every file of examples/ and docs/ in the checkout, by its own path: links to folders
    (the seeds' spellings of example paths) not followed, nothing running them left."""
    found = set()
    for top in BESIDE:
        for folder, dirs, files in os.walk(ROOT / top):
            dirs[:] = [d for d in dirs if d not in LEFT_BEHIND
                       and not (Path(folder) / d).is_symlink()]
            for name in files:
                if not name.endswith(".pyc"):
                    found.add((Path(folder) / name).relative_to(ROOT).as_posix())
    return found


def test_the_sdist_carries_the_examples_and_the_docs_its_readme_names(
        built: dict[str, Path]) -> None:
    expected = beside_files()
    for named in ("examples/README.md", "examples/quickstart/pipeline.yaml",
                  "examples/research_agent/research_agent.py",
                  "examples/agents_example/code_healer_agent.py", "docs/architecture.md"):
        assert named in expected, named
    with tarfile.open(built["sdist"]) as tar:
        shipped = {m.name.split("/", 1)[1] for m in tar.getmembers()
                   if m.isfile() and m.name.split("/")[1] in BESIDE}
    # Each file once, by its own path: a link's copy in place of a real folder left that
    # folder out, and what running the examples leaves in a checkout is no one's example.
    assert shipped == expected, (sorted(expected - shipped), sorted(shipped - expected))
    readme = (built["unpacked"] / "README.md").read_text()
    # Paths under examples/ and docs/, in links and commands (not titan_test_suite/'s).
    named = {n.rstrip(".")
             for n in re.findall(r"(?<![\w/.])((?:examples|docs)/[\w./-]*)", readme)}
    assert {"examples/quickstart/", "examples/research_agent/research_agent.py",
            "docs/sdk.md"} <= named, sorted(named)
    missing = sorted(n for n in named if not (built["unpacked"] / n).exists())
    assert not missing, missing


@pytest.fixture(scope="module")
def installed(built: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel as pip installs it (its files under site-packages), with the dev
    environment's dependencies: the folder to put first on PYTHONPATH."""
    site = tmp_path_factory.mktemp("site-packages")
    with zipfile.ZipFile(built["wheel"]) as whl:
        whl.extractall(site)
    return site


def _env(site: Path, cwd: Path) -> dict[str, str]:
    """The installed copy first on the path; no TITAN_* of the developer's shell, no ~/.titan
    (a module's fixtures start before the per-test isolation of tests/conftest.py)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TITAN_")}
    return dict(env, PYTHONPATH=str(site), PYTHONUNBUFFERED="1",
                TITAN_CONFIG_DIR=str(cwd / "user-config"))


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=_env(site, cwd),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def master(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[str, str, Path]]:
    """`titan master` from the installed wheel, run outside the checkout: (the dashboard's
    URL, the admin token, the folder it runs in)."""
    outside = tmp_path_factory.mktemp("elsewhere")
    where = _run(installed, outside, "-c", "import titan, titan_sdk; "
                 "print(titan.__file__); print(titan_sdk.__file__)")
    assert where.returncode == 0, where.stderr
    assert all(Path(p).is_relative_to(installed) for p in where.stdout.split()), where.stdout
    port, dashboard = free_port(), free_port()
    log = open(outside / "master.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "titan", "master", "--port", str(port), "--dashboard-port",
         str(dashboard), "--data-dir", str(outside / "data")], cwd=outside, stdout=log,
        stderr=subprocess.STDOUT, env=_env(installed, outside),
        start_new_session=True)
    try:
        url = f"http://127.0.0.1:{dashboard}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, \
                (outside / "master.log").read_text(errors="replace")[-3000:]
            time.sleep(0.1)
        yield url, (outside / "data" / "admin.token").read_text().strip(), outside
    finally:
        proc.kill()
        proc.wait(timeout=10)
        log.close()


def test_an_installed_wheel_serves_every_page_with_its_assets(
        master: tuple[str, str, Path]) -> None:
    url, token, _ = master
    docs = sorted(p.stem for p in (ROOT / "docs").glob("*.md"))
    pages = [*PAGES, *(f"/docs/{name}" for name in docs)]
    assets: set[str] = set()
    with httpx.Client(base_url=url, timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as s:
        for page in [*pages, "/login"]:
            reply = s.get(page)
            assert reply.status_code == 200 and "text/html" in reply.headers["content-type"], \
                (page, reply.status_code, reply.text[:300])
            found = {urlsplit(urljoin(f"{url}{page}", ref)).path
                     for ref in re.findall(r'(?:href|src)="(/static/[^"#?]+)', reply.text)}
            assert found, f"{page} names no stylesheet or script"
            assets |= found
        assert {"/static/style.css", "/static/live.js"} <= assets, sorted(assets)
        for asset in sorted(assets):
            reply = s.get(asset)
            assert reply.status_code == 200 and reply.content, (asset, reply.status_code)
        listed = s.get("/docs.json").json()["pages"]
        assert sorted(p["name"] for p in listed) == docs


def test_an_installed_wheel_calibrates_the_judge_from_its_packaged_set(
        installed: Path, master: tuple[str, str, Path]) -> None:
    out = _run(installed, master[2], "-m", "titan", "eval", "calibrate", "--mode", "code",
               "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    shipped = sorted(p.name for p in (ROOT / "src/titan/evals/calibration").glob("*.yaml"))
    assert sorted(report["by_file"]) == shipped and report["cases"] >= len(shipped), report
