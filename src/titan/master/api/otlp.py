"""OTLP/HTTP in — ``POST /v1/traces``, where collectors and exporters send — and the counters
of both directions (``GET /api/v1/otlp``).

The same route is also ``/api/v1/otlp/v1/traces``, for exporters pointed at the API's prefix
(``OTEL_EXPORTER_OTLP_ENDPOINT=http://master:9090/api/v1/otlp``). The body guard
(``api/limits.py``) has already checked the bearer token and the size before a byte was read;
decoding runs in a worker thread, recording in :class:`~titan.master.otel.receiver.Receiver`.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response

from titan.master.api.body import JSONRoute, loads
from titan.master.api.deps import API_PREFIX, CtxDep, OtlpSender, Reader
from titan.master.otel import wire
from titan.storage.base import Row

router = APIRouter(route_class=JSONRoute, tags=["otlp"])
#: Where OTLP/HTTP trace bodies are taken (api/limits.py gives them the JSON body limit).
TRACE_PATHS = ("/v1/traces", f"{API_PREFIX}/otlp/v1/traces")


async def traces(c: CtxDep, p: OtlpSender, request: Request) -> Response:
    body = await request.body()
    media = wire.media_type(request.headers.get("content-type"))
    spans, rejected = await asyncio.to_thread(
        wire.decode, body, request.headers.get("content-type"),
        request.headers.get("content-encoding"), c.config.max_body_bytes, loads)
    got = await c.otlp.receive(spans, rejected, p)
    reply_type = wire.JSON if media == wire.JSON else wire.PROTOBUF
    why = "; ".join(filter(None, (
        "spans with an empty or malformed trace, span or parent span id" if rejected else "", got["why"])))
    return Response(wire.response(reply_type, rejected + got["refused"], why),
                    media_type=reply_type)


# At the root, as collectors serve it (left out of the OpenAPI description: the /api/v1
# twin describes it).
router.add_api_route(TRACE_PATHS[0], traces, methods=["POST"], include_in_schema=False)
router.add_api_route(TRACE_PATHS[1], traces, methods=["POST"],
                     summary="Receive OTLP/HTTP traces (protobuf or JSON): GenAI spans "
                             "become runs and actions")


@router.get(f"{API_PREFIX}/otlp", summary="OTLP in and out: what was received, held, "
                                         "exported and dropped")
async def otlp_status(c: CtxDep, p: Reader) -> Row:
    return {"export": c.exporter.stats() if c.exporter is not None else None,
            "ingest": c.otlp.stats()}
