"""Proof that a plain-HTTP server is the master a token belongs to, asked before the token
is sent.

Over ``http://`` nothing else tells a client that the program listening on the master's port
is the master: while a master is down (a crash, a restart, an upgrade), another local user can
bind its port and read the bearer tokens that clients and retrying workers send. So on each new
connection to a plain-HTTP master, before the first request that carries a token, the client
sends a random nonce and a reference to its token (never the token):

    GET /api/v1/master-proof?nonce=<32 hex>&ref=<token reference>

and the master answers ``{"proof": HMAC-SHA256(key=sha256(token), nonce)}``. Only a process
that can verify the token can compute it: the master holds the SHA-256 of every stored token
(``tokens.token_hash``, revoked ones included: the request that follows gets the refusal),
the secret that job tokens and worker credentials are MACs of, and the hashes of the tokens of
evaluation runs in flight. A server that cannot answer gets nothing. A 401 to the proof ("this
master does not know the token") is no answer either, since anyone can give it: the client
retries as for a master that is away, and reports it when its grace runs out, the token
never sent.

The reference names the token without revealing anything a proof could be made from: the
public part of a job token (``tj.<job>.<attempt>``), an evaluation agent's token
(``ta.<job>.<attempt>``) or a worker credential
(``tw.<token id>.<worker id>``), and for a stored token the SHA-256 of its SHA-256.

What it does not do: it is not TLS. Someone who can relay traffic to a live master (on the
network path, or a standby master sharing its database) can answer for it; ``titan up --tls``
is the answer there. See docs/security.md.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PATH = "/api/v1/master-proof"
_CONTEXT = b"titan-master-proof/1:"


def token_hash(token: str) -> str:
    """The SHA-256 a master keeps of a stored token (it never keeps the token)."""
    return hashlib.sha256(token.encode()).hexdigest()


def stored_ref(digest: str) -> str:
    """The reference of a stored token, from the hash the master keeps of it."""
    return "th." + hashlib.sha256(("titan-ref:" + digest).encode()).hexdigest()[:40]


def token_ref(token: str) -> str:
    """What a client sends instead of its token: enough for the master to find the key."""
    if token.startswith(("tj.", "ta.", "tw.")):
        return token.rpartition(".")[0]  # the MAC, the secret part, is the last field
    return stored_ref(token_hash(token))


def new_nonce() -> str:
    return secrets.token_hex(16)


def proof(digest: str, nonce: str) -> str:
    """The master's answer to ``nonce`` for the token whose SHA-256 is ``digest``."""
    return hmac.new(digest.encode(), _CONTEXT + nonce.encode(), hashlib.sha256).hexdigest()


def proves(token: str, nonce: str, answer: object) -> bool:
    # As bytes: compare_digest raises on a str past ASCII, which any listener can send.
    return isinstance(answer, str) and hmac.compare_digest(
        answer.encode("utf-8", "surrogatepass"), proof(token_hash(token), nonce).encode())
