"""What a port squatter leaves in the browser is undone when the real dashboard loads.

Over plain HTTP, while a master is down, anyone on the host can listen on its port. A page
served there can register a service worker for the dashboard's origin, which then sees every
request of the real dashboard once it is back: a token typed to sign in included (a QA pass).
Titan registers none, so its pages remove any they find and load again outside it.
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path
from typing import Any

from tests.browser.conftest import WAIT_MS
from tests.conftest import free_port
from tests.integration.harness import Cluster

#: The squatter's worker: it passes every request through, so nothing looks amiss.
WORKER = b"""
self.addEventListener('install', e => self.skipWaiting());
self.addEventListener('activate', e => e.waitUntil(self.clients.claim()));
self.addEventListener('fetch', e => e.respondWith(fetch(e.request)));
"""
PAGE = b"""<!doctype html><title>Titan</title><p>restarting...</p>
<script>navigator.serviceWorker.register('/sw.js', {scope: '/'})
  .then(() => navigator.serviceWorker.ready).then(() => { document.title = 'installed'; });
</script>"""


class _Squatter(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        body, kind = (WORKER, "text/javascript") if self.path == "/sw.js" else (PAGE, "text/html")
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


def test_a_service_worker_a_squatter_left_is_removed(browser: Any, tmp_path: Path) -> None:
    port = free_port()
    squatter = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Squatter)
    threading.Thread(target=squatter.serve_forever, daemon=True).start()
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    cluster = Cluster(tmp_path / "c")
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function("document.title === 'installed'")
        squatter.shutdown()
        squatter.server_close()
        # The master comes back on the same port: its dashboard is served there too.
        cluster.port, cluster.url = port, f"http://127.0.0.1:{port}"
        cluster.start_master()
        page.goto(f"http://127.0.0.1:{port}/login")
        page.wait_for_function("!navigator.serviceWorker.controller")  # loaded again, outside
        assert page.evaluate(
            "navigator.serviceWorker.getRegistrations().then(r => r.length)") == 0
        assert page.locator("input#token").count() == 1  # the real sign-in page, uncontrolled
    finally:
        context.close()
        cluster.stop()
