"""A certificate a master is about to serve that every client would refuse is said at start:
expired, not yet valid, or naming none of the host clients reach the master by. A master took
such a file without a word (a QA pass: an expired certificate, one for example.com served on
127.0.0.3), and its operator found out as every worker stopped."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from titan.client.tls import self_signed, served_problems


def certificate(path: Path, names: list[str], *, days: tuple[int, int]) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=days[0]))
            .not_valid_after(now + datetime.timedelta(days=days[1]))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_a_good_certificate_has_nothing_said(tmp_path: Path) -> None:
    cert, _key = self_signed(tmp_path, ["127.0.0.1", "localhost"])
    assert served_problems(cert, "127.0.0.1") == []
    assert served_problems(cert, "LOCALHOST") == []
    assert served_problems(cert, "0.0.0.0") == []  # no host clients use: names not checked
    wild = certificate(tmp_path / "w.pem", ["*.example.com"], days=(-1, 30))
    assert served_problems(wild, "titan.example.com") == []


def test_an_expired_or_early_certificate_is_said(tmp_path: Path) -> None:
    old = certificate(tmp_path / "old.pem", ["127.0.0.3"], days=(-30, -2))
    [said] = served_problems(old, "127.0.0.3")
    assert said.startswith("it expired on ")
    early = certificate(tmp_path / "early.pem", ["127.0.0.3"], days=(3, 30))
    [said] = served_problems(early, "127.0.0.3")
    assert said.startswith("it is not valid before ")


def test_a_certificate_for_other_names_is_said_with_the_names_it_has(tmp_path: Path) -> None:
    other = certificate(tmp_path / "other.pem", ["example.com"], days=(-1, 30))
    [said] = served_problems(other, "127.0.0.3")
    assert said == "it is not valid for 127.0.0.3, the host clients use (example.com)"
    wild = certificate(tmp_path / "w.pem", ["*.example.com"], days=(-1, 30))
    assert served_problems(wild, "a.b.example.com")  # one label only, as clients check
    assert served_problems(wild, "example.com")


def test_a_file_that_is_no_certificate_is_left_to_the_key_check(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    assert served_problems(junk, "127.0.0.1") == []
