"""TLS between clients, workers, jobs and the master: what a client trusts, and the
self-signed certificate `titan up --tls` makes.

A client verifies an ``https://`` master in the first way that applies:

1. ``TITAN_TLS_FINGERPRINT=sha256:<hex>`` pins the master's certificate: the connection is
   accepted only if the certificate the server presents has that SHA-256 (of its DER form),
   whoever signed it. For a self-signed certificate whose fingerprint was read off the
   master's banner, with no file to copy. Several, separated by commas, accept any one of
   them: standby masters that each serve a certificate of their own;
2. ``TITAN_CA_FILE=<pem>``: certificates signed by the CA(s) in that file (or that very
   self-signed certificate), host name checked;
3. what the user config records for that master: a master serving TLS records its
   certificate's fingerprint there when it starts, so clients on its machine need nothing,
   whether the certificate is ``titan up --tls``'s own or one a CA issued (recorded as a CA
   file, a leaf a CA signed is no trust anchor: OpenSSL wants its issuer). A ``ca_file``
   recorded by an earlier version is still read;
4. the system's trust store, as any HTTPS client.

A worker passes both settings on to its jobs (they are not credentials), so the SDK inside a
job verifies the master the way its worker does.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import re
import socket
import ssl
from pathlib import Path
from typing import Any

from titan.errors import ConfigError

FINGERPRINT_ENV = "TITAN_TLS_FINGERPRINT"
CA_FILE_ENV = "TITAN_CA_FILE"
#: How a pinned context's refusal begins (:func:`explain` finds it in whatever wraps it).
NOT_PINNED = "the master's certificate is not"


def fingerprint(cert_pem: Path) -> str:
    """``sha256:<hex>`` of a PEM certificate's DER form (what a pin names); of the first one
    in a file that holds a chain (``fullchain.pem``: the server's own comes first)."""
    text = cert_pem.read_text()
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = text.find(begin)
    stop = text.find(end, start)
    if start < 0 or stop < 0:
        raise ConfigError(f"{cert_pem} holds no PEM certificate")
    der = ssl.PEM_cert_to_DER_cert(text[start:stop + len(end)])
    return "sha256:" + hashlib.sha256(der).hexdigest()


def parse_pins(value: str, source: str = FINGERPRINT_ENV) -> frozenset[bytes]:
    """The SHA-256 digests ``value`` names: ``sha256:<hex>``, or several separated by commas
    (one per master when standbys each serve a certificate of their own)."""
    pins: set[bytes] = set()
    for pin in value.split(","):
        if not pin.strip():
            continue
        digest = pin.strip().lower().removeprefix("sha256:").replace(":", "")
        try:
            raw = bytes.fromhex(digest)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ConfigError(f"{source} must be sha256:<64 hex digits> (several separated "
                              f"by commas), got {pin.strip()!r}")
        pins.add(raw)
    if not pins:
        raise ConfigError(f"{source} names no fingerprint (sha256:<64 hex digits>)")
    return frozenset(pins)


class PinnedContext(ssl.SSLContext):
    """Accepts exactly the server certificates pinned, by their SHA-256, whoever signed them.

    Chain and host name checks are off (a pin is stronger than either); the certificate is
    compared right after the handshake, before any request is written. httpx (through
    httpcore) and websockets both open TLS with ``context.wrap_socket``. Several pins accept
    any one of them: at a failover the next leader may serve a certificate of its own."""

    pins: frozenset[bytes]
    #: Where the pins came from, named when the certificate is none of them.
    source: str

    def __new__(cls, pins: str, source: str = FINGERPRINT_ENV) -> PinnedContext:
        parsed = parse_pins(pins, source)
        ctx = super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)
        ctx.pins = parsed
        ctx.source = source
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def __init__(self, pins: str, source: str = FINGERPRINT_ENV) -> None:  # noqa: D107
        pass  # everything happens in __new__

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        sock = super().wrap_socket(*args, **kwargs)
        der = sock.getpeercert(binary_form=True) or b""
        if hashlib.sha256(der).digest() not in self.pins:
            sock.close()
            which = "the pinned one" if len(self.pins) == 1 else \
                f"any of the {len(self.pins)} pinned"
            # With an errno first, as OpenSSL's own: with the message alone, str() of an
            # SSLError is its args' tuple, and that repr is what workers logged.
            raise ssl.SSLCertVerificationError(ssl.SSL_ERROR_SSL, (
                f"{NOT_PINNED} {which} ({self.source}): it has "
                f"sha256:{hashlib.sha256(der).hexdigest()}"))
        return sock


def client_context(url: str, ca_file: str | None = None) -> ssl.SSLContext | None:
    """The TLS context to reach ``url`` with (None: plain HTTP, or the system's trust)."""
    if not url.startswith(("https://", "wss://")):
        return None
    pin = os.environ.get(FINGERPRINT_ENV, "").strip()
    if pin:
        return PinnedContext(pin)
    ca = os.environ.get(CA_FILE_ENV, "").strip() or ca_file
    if not ca:
        recorded = _recorded(url)
        if recorded.get("fingerprint"):
            return PinnedContext(recorded["fingerprint"], RECORDED)
        ca = recorded.get("ca_file")
    if ca:
        if not Path(ca).is_file():
            raise ConfigError(f"{CA_FILE_ENV}: no certificate file at {ca}")
        try:
            return ssl.create_default_context(cafile=ca)
        except ssl.SSLError as exc:  # a file that holds no PEM certificate: a traceback before
            raise ConfigError(f"{CA_FILE_ENV}: {ca} holds no PEM certificate ({exc.reason})"
                              ) from None
        except OSError as exc:  # a PermissionError traceback in every job before
            where = (" (this job's worker runs it in a sandbox or as another user that may "
                     "not read it: see docs/security.md#isolation-opt-in)"
                     if os.environ.get("TITAN_JOB_ID") else "")
            raise ConfigError(f"{CA_FILE_ENV}: cannot read the certificate file {ca}: "
                              f"{exc.strerror or exc}{where}") from None
    return None


#: The source a pin recorded by a master on this machine is named by.
RECORDED = "the pin its start recorded in this user's config.json"


def explain(error: str, url: str) -> str | None:
    """What a TLS failure reaching ``url`` means and what would fix it, for the failures that
    trying again never fixes (None for any other ``error``: the exception's text as httpx or
    websockets raise it). The CLI raises it; a worker logs it and keeps trying, slowly."""
    if not url.startswith(("https://", "wss://")):
        return None
    pinned = re.search(NOT_PINNED + r"[^:]*: it has sha256:[0-9a-f]{64}", error)
    if pinned is not None:
        if f"({FINGERPRINT_ENV})" in pinned.group(0):
            fix = f"add its pin to {FINGERPRINT_ENV} (several are separated by commas)"
        else:
            fix = (f"start that master again (it records its certificate for the clients on "
                   f"its machine) or set {FINGERPRINT_ENV}")
        return (f"the master at {url} did not present a certificate this client pins: "
                f"{pinned.group(0)}. Its certificate changed (a new one made for it, or a "
                "standby master with a certificate of its own took over) or another server "
                f"answers there: once you know it is your master's, {fix}")
    if "WRONG_VERSION_NUMBER" in error:
        return (f"the server at {url} does not speak TLS ([SSL: WRONG_VERSION_NUMBER]): if the "
                "master serves plain HTTP, name it with http://")
    if "CERTIFICATE_VERIFY_FAILED" not in error:
        return None
    said = re.search(r"certificate verify failed: ([^(\n]*?)\.?\s*(?:\(_ssl|$)", error)
    reason = said.group(1) if said else "certificate verify failed"
    mismatch = re.search(r"(Hostname|IP address) mismatch, certificate is not valid for "
                         r"'([^']*)'", error)
    if mismatch is not None:
        name = mismatch.group(2)
        return (f"the certificate of the master at {url} is not valid for {name}, the "
                f"{'host name' if mismatch.group(1) == 'Hostname' else 'address'} in the URL "
                f"({reason}): name the master as its certificate does (the names and addresses "
                "its subjectAltName lists: `openssl x509 -noout -ext subjectAltName -in "
                f"cert.pem`), or give the master a certificate that lists {name}")
    if "expired" in reason:
        return (f"the master at {url} presented a certificate that has expired: give the "
                "master a new one")
    ca = os.environ.get(CA_FILE_ENV, "").strip()
    if ca:
        return (f"the master at {url} presented a certificate that {CA_FILE_ENV}={ca} does not "
                f"vouch for ({reason}): put the master's certificate, or the CA that signed it, "
                "in that file (with standby masters: every master's, or the CA that signed "
                f"them all), or pin it with {FINGERPRINT_ENV}=<the sha256 its banner prints>")
    return (f"the master at {url} presented a certificate this client does not trust "
            f"({reason}): set {CA_FILE_ENV} to its certificate (a copy of the file given to "
            "--tls-cert, or, for `titan up --tls`, tls/cert.pem in the master's data dir) or "
            f"{FINGERPRINT_ENV} to the sha256 its banner prints")


def httpx_verify(url: str) -> ssl.SSLContext | bool:
    """httpx's ``verify`` for ``url``: the context above, else the default trust."""
    return client_context(url) or True


def _recorded(url: str) -> dict[str, str]:
    """The ``fingerprint`` and ``ca_file`` the user config records for ``url``'s master."""
    from titan.client.config import load_user_config
    from titan.client.urls import parse_url

    try:
        normalized = parse_url(url)[0]
        entry = load_user_config().get("masters", {}).get(normalized)
    except ConfigError:
        return {}
    if not isinstance(entry, dict):
        return {}
    return {k: v for k in ("fingerprint", "ca_file") if isinstance(v := entry.get(k), str) and v}


def self_signed(directory: Path, hosts: list[str]) -> tuple[Path, Path]:
    """A certificate and key for ``hosts`` under ``directory`` (made once, then reused while
    they still cover every host); returns (cert, key). The key is the owner's alone."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    names = sorted({h for h in [*hosts, "localhost", "127.0.0.1", socket.gethostname()] if h})
    if cert.is_file() and key.is_file() and _covers(cert, names):
        return cert, key
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Titan master")])
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(private.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(private, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    # Public, but in the data dir, whose files are all the owner's: written 0600 from the
    # start, so the master's check of that rule does not warn about it as a leak.
    fd = os.open(cert, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(certificate.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _covers(cert: Path, names: list[str]) -> bool:
    from cryptography import x509

    try:
        parsed = x509.load_pem_x509_certificate(cert.read_bytes())
        san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    have = {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    have |= set(san.get_values_for_type(x509.DNSName))
    expires = parsed.not_valid_after_utc
    return set(names) <= have and expires > datetime.datetime.now(datetime.UTC) + \
        datetime.timedelta(days=7)


def served_problems(cert: Path, host: str | None) -> list[str]:
    """What makes a certificate a master is about to serve fail every client: expired or not
    yet valid, or naming none of the host its clients reach it by. A master took such a file
    without a word, and an operator who rotated one in found out as every worker stopped (a
    QA pass). Empty when it reads fine, or cannot be read (load_cert_chain says so)."""
    from cryptography import x509

    try:
        parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    except (ValueError, OSError):
        return []
    said: list[str] = []
    now = datetime.datetime.now(datetime.UTC)
    if parsed.not_valid_after_utc <= now:
        said.append(f"it expired on {parsed.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    elif parsed.not_valid_before_utc > now:
        said.append(f"it is not valid before {parsed.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    if host and host not in ("0.0.0.0", "::"):
        try:
            san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = [str(v) for v in san.get_values_for_type(x509.IPAddress)]
            names += list(san.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            names = []
        if not any(_name_matches(name, host) for name in names):
            listed = ", ".join(names[:5]) or "no subjectAltName"
            said.append(f"it is not valid for {host}, the host clients use ({listed})")
    return said


def _name_matches(name: str, host: str) -> bool:
    """A certificate name against a host, as a client checks it (one wildcard label)."""
    name, host = name.lower().rstrip("."), host.lower().strip("[]").rstrip(".")
    if name == host:
        return True
    try:
        ipaddress.ip_address(host)
        return False  # an address matches only itself
    except ValueError:
        pass
    if name.startswith("*.") and "." in host:
        return host.split(".", 1)[1] == name[2:]
    return False
