"""Titan over the Model Context Protocol: the cluster as tools and resources for agents.

* :mod:`~titan.mcp.tools` — the MCP server (on the official ``mcp`` SDK): its tools, its
  resources, and how each call reaches the API through a :class:`~titan.client.TitanClient`
* :mod:`~titan.mcp.jobs` — the jobs an agent submits: scripts inline or by blob, never a path
* :mod:`~titan.mcp.refusals` — errors worded as the API's, and how long a call may take
* :mod:`~titan.mcp.stdio` — ``titan mcp``'s stdio transport: every line JSON-RPC answers answered

Two ways in serve the same server: ``titan mcp`` on stdio (:mod:`titan.cli.mcp`) and the
master's ``POST /mcp`` (:mod:`titan.master.api.mcp`). Nothing here is imported by ``titan``
itself: the SDK is the optional ``titan-agents[mcp]`` extra, loaded when an MCP client first calls.
"""
