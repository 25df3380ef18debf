"""TLS: `titan up --tls` serves HTTPS and WSS with a self-signed certificate made in the data
dir; its local worker, that worker's jobs and local clients trust it by themselves; clients
elsewhere verify it by CA file or by pinned fingerprint, and refuse it otherwise."""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.integration.test_client_fork import hammer
from titan import errors
from titan.client import TitanClient
from titan.client.tls import fingerprint, self_signed
from titan_sdk import TitanJob

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def titan_up(root: Path, tls: list[str], trust: str) -> Iterator[dict[str, Any]]:
    """`titan up` with the ``tls`` options, ready once its local worker is; ``trust``: a CA
    file the test reaches it with."""
    config_dir = root / "user-config"
    port, data = free_port(), root / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TITAN_")}
    env.update(TITAN_CONFIG_DIR=str(config_dir), PYTHONUNBUFFERED="1", TITAN_LOG_LEVEL="INFO")
    log = open(root / "up.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "titan", "up", *tls, "--port", str(port), "--dashboard-port",
         str(free_port()), "--data-dir", str(data), "--slots", "2"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True)
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (root / "up.log").read_text()
            try:
                ctx = ssl.create_default_context(cafile=trust)
                with urllib.request.urlopen(f"{url}/api/v1/health", context=ctx, timeout=2) as r:
                    if r.status == 200 and "Worker" in (root / "up.log").read_text():
                        break
            except (OSError, ssl.SSLError):
                pass
            assert time.monotonic() < deadline, (root / "up.log").read_text()
            time.sleep(0.1)
        yield {"url": url, "data": data, "config_dir": config_dir, "env": env,
               "token": (data / "admin.token").read_text().strip(), "log": root / "up.log"}
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


@pytest.fixture(scope="module")
def tls_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("tls")
    cert = root / "data" / "tls" / "cert.pem"
    with titan_up(root, ["--tls"], str(cert)) as up:
        yield dict(up, cert=cert)


def test_a_first_start_with_tls_makes_its_data_dir_private_without_a_warning(
        tls_up: dict[str, Any]) -> None:
    # The certificate was written first, its mkdir(parents=True) making the data dir with
    # the umask (0755): the master then tightened it and warned of a leak ("was mode 0755,
    # open to other local users ... rotate tokens") in the directory it had just made.
    umask = os.umask(0o022)
    os.umask(umask)
    assert umask & 0o077 != 0o077, "a umask that opens nothing hides the bug"
    assert stat.S_IMODE(tls_up["data"].stat().st_mode) == 0o700
    log = tls_up["log"].read_text()
    assert "was mode" not in log and "open to other local users" not in log, log[-3000:]


JOB = """
import os
from titan import TitanClient
TitanClient().store_put("tls/" + os.environ["TITAN_JOB_ID"], os.environ["TITAN_MASTER_URL"])
"""


def test_the_worker_and_its_jobs_talk_https_and_wss(tls_up: dict[str, Any],
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    monkeypatch.setenv("TITAN_CONFIG_DIR", str(tls_up["config_dir"]))  # where up recorded it
    client = TitanClient(url=tls_up["url"], token=tls_up["token"])
    script = tmp_path / "tls_job.py"
    script.write_text(JOB)
    dag = client.submit_dag("tls", [TitanJob(job_id="j", filename=str(script))])
    assert client.wait_dag(dag["id"], timeout=60)["status"] == "COMPLETED"
    # The job reached the master over HTTPS with the worker's trust (its pin passed on).
    assert client.store_get("tls/j") == tls_up["url"]
    # The local worker holds its channel over WSS.
    assert any(w["state"] == "live" for w in client.list_workers())
    banner = Path(tls_up["log"]).read_text()
    assert fingerprint(tls_up["cert"]) in banner
    # At TITAN_LOG_LEVEL=INFO the worker says when each job starts and ends.
    assert re.search(r"job tls(#\d+)?/j attempt 1 started \(pid \d+", banner), banner
    assert re.search(r"job tls(#\d+)?/j attempt 1 finished in [\d.]+ s: exit 0", banner), banner


def test_clients_elsewhere_verify_by_ca_file_or_pin(tls_up: dict[str, Any],
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("TITAN_CONFIG_DIR", str(tmp_path / "elsewhere"))  # nothing recorded
    monkeypatch.setenv("TITAN_MASTER_RESTART_GRACE", "0")
    url, token = tls_up["url"], tls_up["token"]
    with pytest.raises(errors.ConnectionFailed, match="certificate"):
        TitanClient(url=url, token=token).health()
    # Not retried (trying again cannot help), and it says what would.
    monkeypatch.delenv("TITAN_MASTER_RESTART_GRACE")
    with pytest.raises(errors.ConnectionFailed, match="TITAN_CA_FILE") as refused:
        TitanClient(url=url, token=token).health()
    assert "tries" not in str(refused.value) and "TITAN_TLS_FINGERPRINT" in str(refused.value)
    # Plain HTTP to the TLS port: said to be an https master, after a few tries, not the
    # whole grace a restart gets.
    with pytest.raises(errors.ConnectionFailed, match="https://") as plain:
        TitanClient(url=url.replace("https://", "http://"), token=token).health()
    assert "tries within" not in str(plain.value)
    monkeypatch.setenv("TITAN_MASTER_RESTART_GRACE", "0")
    monkeypatch.setenv("TITAN_CA_FILE", str(tls_up["cert"]))
    assert TitanClient(url=url, token=token).health()["status"] == "ok"
    monkeypatch.delenv("TITAN_CA_FILE")
    monkeypatch.setenv("TITAN_TLS_FINGERPRINT", fingerprint(tls_up["cert"]))
    assert TitanClient(url=url, token=token).health()["status"] == "ok"
    monkeypatch.setenv("TITAN_TLS_FINGERPRINT", "sha256:" + "ab" * 32)
    with pytest.raises(errors.ConnectionFailed, match="pins") as wrong:
        TitanClient(url=url, token=token).health()
    # What it saw, said plainly (it was a tuple's repr), and no advice to set what is set.
    said = str(wrong.value)
    assert f"it has {fingerprint(tls_up['cert'])}" in said, said
    assert "((" not in said and "set TITAN_TLS_FINGERPRINT" not in said


def test_forked_children_reach_an_https_master_on_connections_of_their_own(
        tls_up: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """https goes through httpx's pool, not the plain-HTTP one: a child gets a fresh one."""
    monkeypatch.setenv("TITAN_CONFIG_DIR", str(tls_up["config_dir"]))
    hammer(TitanClient(url=tls_up["url"], token=tls_up["token"]), "tlsfork", calls=60)


def test_plain_http_to_the_tls_port_is_refused(tls_up: dict[str, Any]) -> None:
    plain = tls_up["url"].replace("https://", "http://")
    with pytest.raises((OSError, urllib.error.HTTPError)):
        urllib.request.urlopen(f"{plain}/api/v1/health", timeout=5)



def test_the_remote_client_example_trusts_the_master_by_fingerprint(
        tls_up: dict[str, Any], tmp_path: Path) -> None:
    """examples/tls/remote_client.py, as a user runs it: a process, a fingerprint, a token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TITAN_")}
    env.update(TITAN_TOKEN=tls_up["token"], TITAN_CONFIG_DIR=str(tmp_path / "cfg"))
    out = subprocess.run(
        [sys.executable, "examples/tls/remote_client.py", tls_up["url"],
         "--fingerprint", fingerprint(tls_up["cert"])],
        capture_output=True, text=True, env=env, timeout=180,
        cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "DAG COMPLETED - written over HTTPS" in out.stdout


def _ca_issued(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for 127.0.0.1 it signed: (ca.pem, fullchain.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def made(subject: str, issuer: str, key: Any, signer: Any, ca: bool) -> Any:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            import ipaddress

            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca = made("Test CA", "Test CA", ca_key, ca_key, True)
    leaf = made("titan.test", "Test CA", leaf_key, ca_key, False)
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "fullchain.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (directory / "key.pem").write_bytes(leaf_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(directory / "key.pem", 0o600)
    return directory / "ca.pem", directory / "fullchain.pem", directory / "key.pem"


def test_a_ca_issued_certificate_needs_nothing_set_on_the_master_s_machine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Recorded as a CA file, the leaf a CA signed was no trust anchor: the local worker never
    # connected and every client on the machine was refused, with nothing set wrong.
    (tmp_path / "pki").mkdir()
    ca, chain, key = _ca_issued(tmp_path / "pki")
    with titan_up(tmp_path, ["--tls-cert", str(chain), "--tls-key", str(key)], str(ca)) as up:
        monkeypatch.setenv("TITAN_CONFIG_DIR", str(up["config_dir"]))
        for name in ("TITAN_CA_FILE", "TITAN_TLS_FINGERPRINT", "TITAN_MASTER_URL", "TITAN_TOKEN",
                     "TITAN_DATA_DIR"):
            monkeypatch.delenv(name, raising=False)
        # Away from the checkout: a ./.titan there (make demo's cluster) is nearer than the
        # user config, and the client would rightly take it.
        monkeypatch.chdir(tmp_path)
        client = TitanClient()  # the master its start recorded
        script = tmp_path / "tls_job.py"
        script.write_text(JOB)
        dag = client.submit_dag("ca", [TitanJob(job_id="j", filename=str(script))])
        assert client.wait_dag(dag["id"], timeout=60)["status"] == "COMPLETED"
        assert client.store_get("tls/j") == up["url"]
        assert fingerprint(chain) in Path(up["log"]).read_text()  # the server's own, first
        cli = subprocess.run([sys.executable, "-m", "titan", "workers"], capture_output=True,
                             text=True, env=up["env"], timeout=60)
        assert cli.returncode == 0 and "local" in cli.stdout, cli.stdout + cli.stderr


def _worker_refused(url: str, token: str, env: dict[str, str], tmp_path: Path) -> str:
    """A `titan worker` for ``url`` with ``env``: it must stop at once; what it said."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TITAN_")}
    out = subprocess.run(
        [sys.executable, "-m", "titan", "worker", "--master", url, "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
        env={**clean, **env, "TITAN_TOKEN": token,
             "TITAN_CONFIG_DIR": str(tmp_path / "cfg")})  # nothing recorded there
    assert out.returncode == 1, out.stdout + out.stderr
    return out.stderr


def test_a_worker_s_tls_mistake_stops_it_saying_what_would_fix_it(
        tls_up: dict[str, Any], tmp_path: Path) -> None:
    """A worker retried every TLS mistake for ever, saying a pin's refusal as a tuple's repr
    with advice to set the pin that was set, a CA file's without naming it, and plain HTTP as
    OpenSSL's bare WRONG_VERSION_NUMBER. Before any master answered it, it is a mistake: the
    worker stops with the CLI's words."""
    token = (tls_up["data"] / "worker.token").read_text().strip()
    said = _worker_refused(tls_up["url"], token,
                           {"TITAN_TLS_FINGERPRINT": "sha256:" + "ab" * 32}, tmp_path)
    assert f"it has {fingerprint(tls_up['cert'])}" in said, said
    assert "('" not in said and "set TITAN_TLS_FINGERPRINT" not in said, said
    other, _ = self_signed(tmp_path / "other", ["127.0.0.1"])
    said = _worker_refused(tls_up["url"], token, {"TITAN_CA_FILE": str(other)}, tmp_path)
    assert f"TITAN_CA_FILE={other} does not vouch for" in said, said
    with socket.create_server(("127.0.0.1", 0)) as plain:  # answers a ClientHello in HTTP
        def answer() -> None:
            with contextlib.suppress(OSError):
                conn, _ = plain.accept()
                with conn:
                    conn.recv(1024)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")

        threading.Thread(target=answer, daemon=True).start()
        said = _worker_refused(f"https://127.0.0.1:{plain.getsockname()[1]}", token, {},
                               tmp_path)
    assert "does not speak TLS" in said and "name it with http://" in said, said
    # And the other way round: http:// to the TLS port retried for ever, hinting each time.
    plain_url = tls_up["url"].replace("https://", "http://")
    said = _worker_refused(plain_url, token, {}, tmp_path)
    assert f"the master at {plain_url} serves HTTPS" in said, said
    assert f"name it with {tls_up['url']}" in said and "retrying" not in said, said


def test_a_host_name_the_certificate_does_not_list_is_said_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI advised TITAN_CA_FILE, set and right: the URL's name was the mistake.
    (tmp_path / "pki").mkdir()
    ca, chain, key = _ca_issued(tmp_path / "pki")  # for 127.0.0.1 only
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(chain, key)
    monkeypatch.setenv("TITAN_CA_FILE", str(ca))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def accept() -> None:
            with contextlib.suppress(OSError):
                conn, _ = listener.accept()
                with server.wrap_socket(conn, server_side=True):
                    pass

        threading.Thread(target=accept, daemon=True).start()
        with pytest.raises(errors.ConnectionFailed) as refused:
            TitanClient(url=f"https://localhost:{listener.getsockname()[1]}",
                        token="t").health()
    said = str(refused.value)
    assert "is not valid for localhost, the host name in the URL" in said, said
    assert "subjectAltName" in said and "TITAN_CA_FILE" not in said, said
