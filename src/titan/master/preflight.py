"""What a master's startup opens, tried before the app starts.

Inside the app's startup a bad setting was a 60-line traceback and exit status 3
("Application startup failed"); tried here first, it is a one-line ConfigError: the token
files, the egress rules, the TLS certificate and key, the blob store (a directory that is a
file, an unreachable bucket); for a standby, whether its blob store is the leader's, its
scheme the leader's (plain HTTP beside HTTPS: no client setting bridges that) and its
certificate (a warning, :mod:`titan.master.tls_pin`); for a master about to lead, the mark
it leaves in its blob store (a store that cannot take it: a full disk).
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from titan.errors import BlobStoreUnavailable, BlobStoreUnwritable, ConfigError
from titan.master import blob_mark, tls_pin
from titan.master.config import MasterConfig

log = logging.getLogger("titan.master")


def check(config: MasterConfig, storage: Any, *, standby: bool = False) -> None:
    """Try what the app's startup opens, with ``storage`` open and its leadership settled
    (``standby``: another master leads); a ConfigError says what is wrong."""
    from titan.master.auth.tokens import read_token_file
    from titan.master.egress import EgressPolicy
    from titan.storage.blobs import open_blob_store

    for name in ("admin.token", "worker.token"):  # written or registered at startup
        read_token_file(config.data_path / name)
    EgressPolicy.from_env()
    if config.tls_cert and config.tls_key:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                config.tls_cert, config.tls_key)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"TLS: cannot use {config.tls_cert} with {config.tls_key} "
                              f"(a PEM certificate and its key?): {exc}") from None
        from titan.client.tls import served_problems

        for problem in served_problems(Path(config.tls_cert), urlsplit(config.public_url).hostname):
            log.warning("TLS: %s: %s; every client and worker will refuse it", config.tls_cert,
                        problem)
    try:
        blobs = open_blob_store(config.blob_settings(), storage, announce=False)
    except ConfigError:
        raise
    except (BlobStoreUnwritable, BlobStoreUnavailable) as exc:  # it says where, and what to do
        raise ConfigError(exc.message) from None
    except Exception as exc:  # OSError, botocore's NoCredentialsError, ClientError...
        said = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"TITAN_BLOB_STORE={config.blob_store or 'directory'}: cannot open "
                          f"the blob store: {said}") from None
    try:
        if standby:  # another master leads: its store must be this one's (master/blob_mark.py)
            with storage.read_transaction() as tx:
                blob_mark.check_standby(tx, blobs)
        else:  # about to lead: the mark it leaves in its store, left before the app starts
            blob_mark.leave(storage, blobs)
        blob_mark.record_use(storage, blobs, lead=not standby)
    except (BlobStoreUnwritable, BlobStoreUnavailable) as exc:  # the mark is the first blob
        raise ConfigError(exc.message) from None
    finally:
        blobs.close()
    leader = storage.leadership.leader() if standby else None
    if leader is not None and leader.url.split("://")[0] != config.public_url.split("://")[0]:
        # Clients and workers follow the leader's URL: at a failover they would come to
        # this one with the other scheme, and every connection fail.
        raise ConfigError(f"the leader serves {leader.url} and this master would serve "
                          f"{config.public_url}: every master of one database needs the "
                          "same TLS settings (--tls-cert and --tls-key on each, or none)")
    if standby:  # the same scheme, maybe not the same certificate: said, not refused
        with storage.read_transaction() as tx:
            tls_pin.check_standby(tx, config, leader.url if leader is not None else "")
