"""Master settings: one dataclass, every field documented in docs/configuration.md."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from titan.client.data_dirs import workspace_around
from titan.client.urls import API_PATH
from titan.errors import ConfigError, ValidationFailed
from titan.formats import HOST_HEADER, setting_number
from titan.master.otel.settings import ExportSettings, hold_seconds
from titan.master.scheduling.validation import MAX_RETRIES
from titan.redaction import Redactor, from_settings
from titan.storage.blobs import BlobSettings
from titan.windows import deletion_cutoff

#: Addresses that bind every interface.
WILDCARD_HOSTS = ("0.0.0.0", "::")


def _env_float(name: str, default: float, low: float, high: float, unit: str = "",
               whole: bool = False) -> float:
    """A number from ``low`` to ``high`` from the environment (``whole``: an integer); any
    other value is a one-line ConfigError naming the variable and its bounds. A ValueError
    traceback stopped the master; so did a huge finite value that overflowed where it was
    used (TITAN_MAX_LOG_MB=1e305), and 1e300 retries were said as a 301-digit number."""
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not low <= value <= high or (whole and not value.is_integer()):
        shown = setting_number(value) if math.isfinite(value) else repr(raw[:40])
        raise ConfigError(f"{name} must be {'a whole number ' if whole else ''}"
                          f"{setting_number(low)} to {setting_number(high)}{unit}, got {shown}")
    return value


#: The largest request body (TITAN_MAX_BODY_BYTES, TITAN_MAX_UPLOAD_BYTES) and log an attempt
#: keeps (TITAN_MAX_LOG_MB) one may set: 1 TiB, past any one machine's disk today.
MAX_BYTES_SETTING = 1 << 40
#: A year: the longest TITAN_JOB_MAX_DELAY (a job's ``delay`` is bounded so too).
YEAR_SECONDS = 365 * 86_400


#: A lease's bounds. Shorter, a worker's heartbeat (a third of it) cannot keep a lease alive:
#: every job ran attempt after attempt until it failed. Longer, a dead worker's jobs wait
#: over an hour to run again, and past ~1e9 s a worker's heartbeat wait overflows (1e300
#: was accepted, and every worker's heartbeat thread died).
MIN_LEASE_SECONDS = 1.0
MAX_LEASE_SECONDS = 3600.0


@dataclass
class MasterConfig:
    host: str = "127.0.0.1"
    port: int = 9090
    dashboard_port: int | None = 5000
    data_dir: str = ".titan"
    database_url: str | None = None  # default: sqlite:///<data_dir>/titan.db
    lease_seconds: float = field(default_factory=lambda: _env_float(
        "TITAN_LEASE_SECONDS", 15.0, MIN_LEASE_SECONDS, MAX_LEASE_SECONDS, " seconds"))
    #: How long a write's Idempotency-Key is remembered (titan.master.idempotency).
    idempotency_ttl: float = field(default_factory=lambda: _env_float(
        "TITAN_IDEMPOTENCY_TTL", 900.0, 0, 30 * 86_400, " seconds"))
    default_retries: int = field(default_factory=lambda: int(_env_float(
        "TITAN_DEFAULT_RETRIES", 0, 0, MAX_RETRIES, whole=True)))
    #: The first retry's delay; doubled each attempt up to retry_backoff_max, so a first
    #: delay past that could never be waited.
    retry_backoff: float = field(default_factory=lambda: _env_float(
        "TITAN_RETRY_BACKOFF", 1.0, 0, 60, " seconds"))
    retry_backoff_max: float = 60.0
    affinity_wait: float = field(default_factory=lambda: _env_float(
        "TITAN_AFFINITY_WAIT", 0.5, 0, 3600, " seconds"))
    max_value_bytes: int = 16 * 1024 * 1024
    #: Any request body but a raw upload (JSON, forms): refused past this, before it is read.
    max_body_bytes: int = field(default_factory=lambda: int(_env_float(
        "TITAN_MAX_BODY_BYTES", 64 * 1024 * 1024, 1024, MAX_BYTES_SETTING, " bytes")))
    max_upload_bytes: int = field(default_factory=lambda: int(_env_float(
        "TITAN_MAX_UPLOAD_BYTES", 4 * 1024 ** 3, 1024, MAX_BYTES_SETTING, " bytes")))
    max_dag_jobs: int = 100_000
    #: The longest a DAG submitted with a job's token may delay its jobs (seconds, along each
    #: chain): a job must not outlive itself (master/api/dags.py); a schedule is for later.
    job_max_delay: float = field(default_factory=lambda: _env_float(
        "TITAN_JOB_MAX_DELAY", 3600.0, 0, YEAR_SECONDS, " seconds"))
    #: The log one attempt keeps (its lines' characters, ~32 more a line); past it its lines
    #: are dropped, with one line saying so. 0: no cap.
    max_log_bytes: int = field(default_factory=lambda: int(_env_float(
        "TITAN_MAX_LOG_MB", 256, 0, MAX_BYTES_SETTING >> 20, " MiB") * 1024 * 1024))
    #: The event stream says {"type": "ping"} after this many quiet seconds: a page that hears
    #: nothing for 2.5 times as long knows its socket died silently and reconnects.
    events_ping_seconds: float = field(default_factory=lambda: _env_float(
        "TITAN_EVENTS_PING", 20.0, 0.2, 3600, " seconds"))
    allowed_hosts: list[str] = field(default_factory=list)  # extra Host headers accepted
    #: The URL other masters and clients are told to use for this master while it leads
    #: (a standby names it); default: the address it listens on.
    advertise_url: str | None = field(
        default_factory=lambda: os.environ.get("TITAN_ADVERTISE_URL") or None)
    #: On PostgreSQL, wait as a standby when another master leads (False: refuse to start).
    standby: bool = True
    #: The command that runs this master, in the names of the tokens its first start makes
    #: (``admin (titan up)``, ``worker (titan master)``): `titan up` sets it.
    started_by: str = "titan master"
    #: Filled at start: the data dir's token files that hold a revoked token (the banner
    #: says so rather than point at a file that opens nothing).
    revoked_files: set[str] = field(default_factory=set)
    #: Serve HTTPS with this certificate and key (PEM files); `titan up --tls` makes both.
    tls_cert: str | None = field(default_factory=lambda: os.environ.get("TITAN_TLS_CERT") or None)
    tls_key: str | None = field(default_factory=lambda: os.environ.get("TITAN_TLS_KEY") or None)
    #: A leader whose heartbeat is older than this is taken for dead by the standbys.
    leader_timeout: float = field(default_factory=lambda: _env_float(
        "TITAN_LEADER_TIMEOUT", 5.0, 1, 3600, " seconds"))
    #: A run whose recording process showed no sign of life this long is ended failed
    #: (titan.master.runs.liveness); the SDK shows one every 30 s.
    run_alive_timeout: float = field(default_factory=lambda: _env_float(
        "TITAN_RUN_ALIVE_TIMEOUT", 120.0, 1, 7 * 86_400, " seconds"))
    #: An HTTP agent's calls in flight at once, per evaluation (the rest wait, pending): a
    #: suite of 1,000 tasks sent its endpoint 1,000 requests at once.
    eval_http_concurrency: int = field(default_factory=lambda: int(_env_float(
        "TITAN_EVAL_HTTP_CONCURRENCY", 16, 1, 10_000, whole=True)))
    # Finished agent runs older than this ("90d", "12h") are deleted hourly; unset keeps all.
    run_retention: str | None = field(
        default_factory=lambda: os.environ.get("TITAN_RUN_RETENTION") or None)
    # Finished DAG runs older than this ("30d", "12h") are deleted hourly with their jobs and
    # logs (not those of agent runs, nor the latest run of each name); unset keeps all.
    dag_retention: str | None = field(
        default_factory=lambda: os.environ.get("TITAN_DAG_RETENTION") or None)
    # Versions of a file stored longer ago than this ("90d") are deleted hourly, unless the
    # newest of their name or store key; unset keeps all.
    file_retention: str | None = field(
        default_factory=lambda: os.environ.get("TITAN_FILE_RETENTION") or None)
    # Finished agent runs older than this many days are archived (hidden, kept); "0" never.
    run_archive_days: str | None = field(
        default_factory=lambda: os.environ.get("TITAN_RUN_ARCHIVE_DAYS"))
    #: PII redaction of recorded actions (titan.redaction): on or off, the built-in patterns
    #: to apply, and a file of custom ones. Checked when the master starts.
    pii_redaction: str | None = field(
        default_factory=lambda: os.environ.get("TITAN_PII_REDACTION"))
    pii_patterns: str | None = field(
        default_factory=lambda: os.environ.get("TITAN_PII_PATTERNS"))
    pii_patterns_file: str | None = field(
        default_factory=lambda: os.environ.get("TITAN_PII_PATTERNS_FILE"))
    #: Where blobs live (titan.storage.blobs): "directory" (the default), "database" or
    #: "s3://bucket/prefix"; the directory store's directory; the S3 store's endpoint.
    blob_store: str | None = field(default_factory=lambda: os.environ.get("TITAN_BLOB_STORE"))
    blob_dir: str | None = field(default_factory=lambda: os.environ.get("TITAN_BLOB_DIR"))
    s3_endpoint_url: str | None = field(
        default_factory=lambda: os.environ.get("TITAN_S3_ENDPOINT_URL"))
    #: Blob garbage collection (titan.master.blob_gc): blobs nothing names, unused this long
    #: ("1d" when unset, "12h"; at least an hour), are deleted hourly and after a prune;
    #: "off": only when an admin asks (POST /blobs/gc, titan admin blobs gc).
    blob_gc: str | None = field(default_factory=lambda: os.environ.get("TITAN_BLOB_GC"))
    #: OTLP out (titan.master.otel): the collector's OTLP/HTTP URL, which runs are sent
    #: ("all", or "opt-in": those tagged otlp), extra request headers, and whether inputs
    #: and outputs go along. Checked when the master starts.
    otlp_endpoint: str | None = field(
        default_factory=lambda: os.environ.get("TITAN_OTLP_ENDPOINT") or None)
    otlp_export: str | None = field(default_factory=lambda: os.environ.get("TITAN_OTLP_EXPORT"))
    otlp_headers: str | None = field(
        default_factory=lambda: os.environ.get("TITAN_OTLP_HEADERS"))
    otlp_content: str | None = field(
        default_factory=lambda: os.environ.get("TITAN_OTLP_CONTENT"))
    #: Whether runs imported over OTLP are exported too ("off" when unset: an agent that
    #: sends to a collector and to Titan had its spans twice there).
    otlp_reexport: str | None = field(
        default_factory=lambda: os.environ.get("TITAN_OTLP_REEXPORT"))
    #: OTLP in: seconds a received span waits for its parent before it is recorded anyway.
    otlp_hold: str | None = field(default_factory=lambda: os.environ.get("TITAN_OTLP_HOLD"))

    @property
    def archive_days(self) -> float:
        """TITAN_RUN_ARCHIVE_DAYS as days: 90 when unset, 0 when archiving is off."""
        raw = self.run_archive_days
        if raw in (None, ""):
            return 90.0
        try:
            days = float(raw)
        except ValueError:
            days = -1.0
        if not (days >= 0 and math.isfinite(days)):  # inf (1e400 too) read as "never"
            raise ConfigError(f"TITAN_RUN_ARCHIVE_DAYS must be a number of days (0 turns "
                              f"archiving off), got {raw!r}")
        return days

    @property
    def blob_gc_min_age(self) -> str | None:
        """TITAN_BLOB_GC as the master's own collections' grace period; None when off."""
        raw = (self.blob_gc or "").strip()
        if not raw:
            return "1d"
        return None if raw.lower() in ("off", "0", "no", "false") else raw

    def redactor(self) -> Redactor | None:
        """The PII redactor these settings ask for (None: off); ConfigError naming a bad
        pattern, so a master with one does not start."""
        return from_settings(self.pii_redaction, self.pii_patterns, self.pii_patterns_file)

    def otlp_export_settings(self) -> ExportSettings | None:
        """Where runs are exported as OTLP spans (None: nowhere); ConfigError for a bad
        setting."""
        return ExportSettings.parse(self.otlp_endpoint, self.otlp_export, self.otlp_headers,
                                    self.otlp_content, self.otlp_reexport)

    def otlp_hold_seconds(self) -> float:
        return hold_seconds(self.otlp_hold)

    def blob_settings(self) -> BlobSettings:
        """The blob store these settings name; ConfigError for one that cannot work."""
        return BlobSettings.parse(self.blob_store, self.blob_dir, self.s3_endpoint_url,
                                  data_dir=self.data_path,
                                  database_url=self.resolved_database_url)

    def check(self) -> None:
        """Settings that would otherwise fail only inside the app's startup, checked before
        anything is opened: a bad one is a one-line ConfigError."""
        self.check_data_dir()
        self.redactor()
        self.otlp_export_settings()
        self.otlp_hold_seconds()
        _ = self.archive_days
        self.blob_settings()
        for window, env in ((self.run_retention, "TITAN_RUN_RETENTION"),
                            (self.dag_retention, "TITAN_DAG_RETENTION"),
                            (self.file_retention, "TITAN_FILE_RETENTION"),
                            (self.blob_gc_min_age, "TITAN_BLOB_GC")):
            if window is not None:
                try:
                    deletion_cutoff(window, env)
                except ValidationFailed as exc:
                    raise ConfigError(str(exc)) from None
        if not MIN_LEASE_SECONDS <= self.lease_seconds <= MAX_LEASE_SECONDS:
            raise ConfigError(f"TITAN_LEASE_SECONDS must be {MIN_LEASE_SECONDS:g} to "
                              f"{MAX_LEASE_SECONDS:g} seconds, got {setting_number(self.lease_seconds)}")
        if not 1.0 <= self.run_alive_timeout <= 7 * 86_400:
            raise ConfigError(f"TITAN_RUN_ALIVE_TIMEOUT must be 1 to 604800 seconds, got "
                              f"{setting_number(self.run_alive_timeout)}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"the master's port must be 1-65535, got {self.port}")
        if self.dashboard_port is not None and not 0 <= self.dashboard_port < 65536:
            raise ConfigError(f"the dashboard's port must be 1-65535 (0: none), got "
                              f"{self.dashboard_port}")
        if not 0 <= self.default_retries <= MAX_RETRIES:
            # 1e9 retried a failing job for ever; 1e30 made every submission a 500.
            raise ConfigError(f"TITAN_DEFAULT_RETRIES must be a whole number 0 to "
                              f"{MAX_RETRIES}, got {setting_number(self.default_retries)}")
        if not 0.2 <= self.events_ping_seconds <= 3600:
            # 0 was taken as 0.2 without a word: five pings a second on every open page.
            raise ConfigError(f"TITAN_EVENTS_PING must be 0.2 to 3600 seconds, got "
                              f"{setting_number(self.events_ping_seconds)}")
        if not 1.0 <= self.leader_timeout <= 3600:
            raise ConfigError(f"TITAN_LEADER_TIMEOUT must be 1 to 3600 seconds, got "
                              f"{setting_number(self.leader_timeout)}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("TLS needs both a certificate and its key (--tls-cert and "
                              "--tls-key, or TITAN_TLS_CERT and TITAN_TLS_KEY)")
        for path in (self.tls_cert, self.tls_key):
            if path and not Path(path).is_file():
                raise ConfigError(f"TLS: no such file {path}")
        if self.advertise_url is not None and not self.advertise_url.startswith(
                ("http://", "https://")):
            raise ConfigError(f"TITAN_ADVERTISE_URL must be an http(s) URL, got "
                              f"{self.advertise_url!r}")

    def check_data_dir(self) -> None:
        """A data dir that is a file, or under one, said so: it was "cannot create the
        directory ...: File exists" (a QA pass)."""
        path = self.data_path
        above = next((p for p in (path, *path.parents) if p.exists()), None)
        if above is not None and not above.is_dir():
            where = "is a file" if above == path else f"is under {above}, a file"
            raise ConfigError(f"--data-dir {path} {where}, not a directory: name a directory "
                              "(made if missing)")
        if above is not None and above != path and not os.access(above, os.W_OK | os.X_OK):
            # It said "cannot create the directory ...: Permission denied", not that another
            # place can be named (./.titan in a checkout or volume read-only to this user).
            raise ConfigError(f"--data-dir {path} cannot be made: {above} is not writable by "
                              "this user: run this where you can write, or name a data dir "
                              "you can write with --data-dir DIR")
        workspace = workspace_around(path)
        if workspace is not None:  # every job of that worker could read the tokens
            raise ConfigError(f"--data-dir {path} is inside {workspace}, a Titan worker's "
                              "workspace, where its jobs run and could read the master's "
                              "tokens and database: name a data dir outside it")

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        url = self.database_url or os.environ.get("TITAN_DATABASE_URL")
        return url or f"sqlite:///{self.data_path / 'titan.db'}"

    @property
    def listens_everywhere(self) -> bool:
        """Bound to every interface (``--host 0.0.0.0``): its own address says nothing of
        where other machines reach it."""
        return self.host in WILDCARD_HOSTS

    @property
    def api_url(self) -> str:
        host = "127.0.0.1" if self.listens_everywhere else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def public_url(self) -> str:
        """Where others reach this master: TITAN_ADVERTISE_URL (its root: a trailing
        ``/api/v1`` is read as the API's base, as clients read it), else the listening
        address."""
        return (self.advertise_url or self.api_url).rstrip("/").removesuffix(API_PATH)

    def public_url_as_seen(self, host_header: str | None) -> str:
        """Where other machines reach this master, for a page asked for with ``host_header``.
        Listening on every interface without TITAN_ADVERTISE_URL, the listening address is
        127.0.0.1, which no other machine can use (the dashboard's "start a worker" command
        named it): the host the page was asked on, which reached this machine, is a better
        guess, with the API's port. The header is the client's to write, so only a plain
        name or address (and port) is taken; anything else, public_url."""
        if self.advertise_url or not self.listens_everywhere or not host_header \
                or not HOST_HEADER.fullmatch(host_header):
            return self.public_url
        name = host_header if host_header.endswith("]") else host_header.rsplit(":", 1)[0]
        return f"{self.scheme}://{name}:{self.port}"

    def dashboard_url_as_seen(self, host_header: str | None) -> str | None:
        """The dashboard's own port (``--dashboard-port``) at the host a request named with
        ``host_header``, where ``titan dashboard`` prints its sign-in link: the banner's
        address, so a browser's open tabs there keep their session's write key (kept per
        scheme, host and port). None when the master serves no port of its own for the
        dashboard, or the request named another port than the master's (a proxy or a tunnel,
        behind which the dashboard's port is unknown): the URL asked serves the dashboard
        too."""
        if not self.dashboard_port or self.dashboard_port == self.port or not host_header \
                or not HOST_HEADER.fullmatch(host_header):
            return None
        if host_header.endswith("]") or ":" not in host_header:
            name, port = host_header, (443 if self.scheme == "https" else 80)
        else:
            name, named = host_header.rsplit(":", 1)
            port = int(named)
        if port not in (self.port, self.dashboard_port):
            return None
        return f"{self.scheme}://{name}:{self.dashboard_port}"
