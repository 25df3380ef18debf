"""``titan dashboard``: the dashboard's one-click sign-in link again (the banner scrolled
away), for a token that can sign in.

The link carries the token, so it is only as good as the token: a worker's or a job's cannot
sign in (the link answered 401), and is refused here, before any link is printed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import urlencode, urlsplit

from titan.cli.output import print_json
from titan.errors import NotFound, TitanError


def run(args: argparse.Namespace, client: Any) -> int:
    with client:
        token = client.endpoint.token
        if not token:
            raise TitanError("no token for this master: pass --token or set TITAN_TOKEN")
        me = _check_signs_in(client)
        # On the dashboard's own port when the master serves one (the banner's address, where
        # the user's tabs are: their write key is kept per port, and a sign-in elsewhere ended
        # their session); else the API's, which serves the dashboard too.
        site = _same_host(me.get("dashboard_url"), client.url) or client.url
        # A page named without its slash ('agents') is the page meant: sign-in only lands on
        # a path of this site, and would take 'agents' for somewhere else (landing on /).
        page = args.page if args.page.startswith("/") else "/" + args.page
        link = f"{site}/login?{urlencode({'token': token, 'next': page})}"
        # The browser gets a one-time code, not the token: its command line is every local
        # user's to read for as long as it runs (auth/sign_in_codes.py).
        opened = _code_link(client, site, page) if args.open else None
    if getattr(args, "json", False):
        print_json({"url": link, "page": page})
    else:
        print(link)
    if args.open:
        import webbrowser

        if opened is None:
            print("warning: this master makes no one-time sign-in codes (an older version): "
                  "the link handed to the browser holds the token, which other users of this "
                  "machine can read on its command line", file=sys.stderr)
        if not webbrowser.open(opened or link):  # no browser here (a server, over SSH)
            print("warning: could not open a web browser on this machine; open the link "
                  "in one yourself", file=sys.stderr)
    return 0


def _code_link(client: Any, site: str, page: str) -> str | None:
    """A sign-in link for the browser with a one-time code in place of the token; None from
    a master without codes."""
    try:
        code = client.api("POST", "/sign-in-codes", json={})["code"]
    except NotFound:
        return None
    return f"{site}/login?{urlencode({'code': code, 'next': page})}"


def _same_host(site: Any, own: str) -> str | None:
    """``site`` when it is the master this CLI asked, on another port: the link carries the
    token, so it never names a host or scheme the user did not (whatever a reply says)."""
    if not isinstance(site, str):
        return None
    theirs, ours = urlsplit(site), urlsplit(own)
    try:
        port = theirs.port
    except ValueError:
        return None
    if (theirs.scheme, theirs.hostname) != (ours.scheme, ours.hostname) or port is None \
            or theirs.path not in ("", "/") or theirs.query or theirs.username:
        return None
    return site.rstrip("/")


def _check_signs_in(client: Any) -> dict[str, Any]:
    """What the master says of the token (``GET /whoami``), refusing one that cannot sign in
    to the dashboard (a worker's, a job's). A master too old to say is not asked."""
    try:
        me: dict[str, Any] = client.api("GET", "/whoami")
    except NotFound:
        return {}
    if not me.get("dashboard", True):
        raise TitanError(f"this {me.get('role')} token cannot sign in to the dashboard: use an "
                         "admin, operator or viewer token (an admin makes one: titan token "
                         "create --role viewer)")
    return me
