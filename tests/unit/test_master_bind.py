"""A master that cannot listen says why, and what to change: every failed bind blamed "another
Titan master" and suggested another --port, a host that does not resolve or is not this
machine's too (a CLI QA pass)."""

from __future__ import annotations

import socket

import pytest

from titan.errors import ConfigError
from titan.master.server import bind


def test_a_port_in_use_suggests_another_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            bind("127.0.0.1", port, "--dashboard-port")
    assert str(caught.value) == (f"cannot listen on 127.0.0.1:{port}: Address already in use "
                                 "(is another Titan master running? pick another "
                                 "--dashboard-port)")


@pytest.mark.parametrize(("host", "said"), [
    ("no-such-host.invalid", "--host no-such-host.invalid cannot be resolved: give an address "
                             "of this machine, e.g. 127.0.0.1, or 0.0.0.0 for all of them)"),
    ("192.0.2.1", "Cannot assign requested address (--host 192.0.2.1 is not an address of this "
                  "machine: give one of its own, e.g. 127.0.0.1, or 0.0.0.0 for all of them)"),
])
def test_a_host_that_is_not_this_machines_says_so(host: str, said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        bind(host, 0)
    assert str(caught.value).endswith(said), caught.value
    assert "another Titan master" not in str(caught.value)
