"""What every request handler reaches: the master's parts, built once at start.

A leaf of the services layer (it only names them), so that the API, the dashboard and the
services that take it (sessions) all import it from here rather than from the API.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from titan.master.auth.proofs import ProofKeys
from titan.master.auth.sign_in_codes import SignInCodes
from titan.master.auth.tokens import TokenCache
from titan.master.blob_gc import BlobCollector
from titan.master.config import MasterConfig
from titan.master.evaluations.service import Evaluations
from titan.master.events import EventHub
from titan.master.otel.exporter import Exporter
from titan.master.otel.receiver import Receiver
from titan.master.replays.service import Replays
from titan.master.runs.retention import Retention
from titan.master.runs.service import RunService
from titan.master.schedules.service import Schedules
from titan.master.scheduling.engine import Engine
from titan.storage.base import Storage
from titan.storage.blobs import BlobStore


@dataclass
class Ctx:
    config: MasterConfig
    storage: Storage
    engine: Engine
    hub: EventHub
    blobs: BlobStore
    tokens: TokenCache
    proofs: ProofKeys  # the key each token reference stands for (GET /master-proof)
    runs: RunService
    retention: Retention  # archiving and deleting old runs
    replays: Replays
    evals: Evaluations
    otlp: Receiver  # OTLP in: traces become runs
    exporter: Exporter | None  # OTLP out: None unless TITAN_OTLP_ENDPOINT is set
    schedules: Schedules  # cron schedules: a run per tick
    blob_gc: BlobCollector  # deleting blobs nothing names any more
    #: This master process's own key: a dashboard session signed in over plain HTTP is
    #: signed with it too, so it ends when this process does (auth/sessions.py).
    process_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    #: One-time codes `titan dashboard --open` signs a browser in with (auth/sign_in_codes.py).
    sign_in_codes: SignInCodes = field(default_factory=SignInCodes)
