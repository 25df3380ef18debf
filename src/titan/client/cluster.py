"""The cluster as the SDK reads it: workers, agent runs, and API tokens (admin); part of
:class:`~titan.client.client.TitanClient`."""

from __future__ import annotations

from typing import Any

from titan.client.transport import Transport
from titan.url_paths import quote_run, quote_segment


class ClusterOps:
    """``get_workers``, ``list_workers``, ``agent_runs``, ``agent_run`` and the token calls."""

    _transport: Transport

    def get_workers(self) -> dict[str, Any]:
        """``{"workers": [...], "queues": {requirement: n}, "unschedulable": [...]}``."""
        reply: dict[str, Any] = self._transport.call("GET", "/workers")
        return reply

    def list_workers(self) -> list[dict[str, Any]]:
        """The workers the master knows."""
        return list(self.get_workers().get("workers", []))

    def agent_runs(self, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """Agent runs, newest first, each with its stages."""
        reply = self._transport.call("GET", "/agent-runs",
                                     params={"limit": limit, "offset": offset})
        return list(reply.get("agent_runs", []))

    def agent_run(self, run_id: str) -> dict[str, Any]:
        """One agent run with its stages."""
        reply: dict[str, Any] = self._transport.call("GET", f"/agent-runs/{quote_run(run_id)}")
        return reply

    # ------------------------------------------------------------------ tokens (admin)

    def create_token(self, role: str, name: str | None = None) -> dict[str, Any]:
        """A new token (``{"id", "token", "role", "name"}``; the secret is shown only now)."""
        reply: dict[str, Any] = self._transport.call("POST", "/tokens",
                                                     json={"role": role, "name": name})
        return reply

    def list_tokens(self) -> list[dict[str, Any]]:
        """Tokens (without their secrets)."""
        return list(self._transport.call("GET", "/tokens").get("tokens", []))

    def revoke_token(self, token_id: str | int) -> bool:
        """Revoke a token by id."""
        ref = quote_segment(token_id, f"no live token {token_id!r}")
        reply = self._transport.call("DELETE", f"/tokens/{ref}")
        return bool(reply.get("revoked")) if isinstance(reply, dict) else True
