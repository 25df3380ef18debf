"""The DAG builder's routes: the page ``/dags/new`` (and its twin) and the draft check.

The page carries what its pickers offer — the uploaded files a job's script can be, the
capabilities of the live workers — and the browser keeps the draft. Each change is sent to
``POST /dags/new/check``, which answers with the layout, the problems, the YAML and, when
nothing is wrong, the body the page then sends to ``POST /api/v1/dags`` itself: submitting
goes through the API's own route, role check and CSRF check included, like every button of
the dashboard. Reading a draft changes nothing, so a viewer may check one too.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from titan.dashboard import drafts
from titan.dashboard.render import Data, reader, twin
from titan.errors import ValidationFailed
from titan.master.api.body import loads
from titan.master.api.deps import ctx
from titan.master.auth import tokens as auth
from titan.master.context import Ctx
from titan.master.scheduling import worker_views
from titan.storage.base import Transaction

router = APIRouter()
#: The newest files the script picker offers (the latest upload of each name among them).
FILES_LISTED = 1000


@twin(router, ["/dags/new"], "builder.html", "builder")
async def builder_page(request: Request, c: Ctx, p: auth.Principal) -> Data:
    files = await c.engine.read(lambda tx: tx.list_files(limit=FILES_LISTED))
    latest: dict[str, Data] = {}
    for f in files:  # newest first: the first of a name is the one a script resolves to
        latest.setdefault(f["name"], {"name": f["name"], "sha256": f["sha256"],
                                      "size": f["size"], "created_at": f["created_at"]})
    workers = await worker_views.workers_view(c.engine)
    capabilities = {"GENERAL"} | {cap for w in workers["workers"] if w["state"] == "live"
                                  for cap in w["capabilities"]}
    return {"files": list(latest.values()), "capabilities": sorted(capabilities),
            "max_jobs": c.config.max_dag_jobs}


@router.post("/dags/new/check", include_in_schema=False)
async def check_draft(request: Request) -> JSONResponse:
    """``{"name", "jobs": [draft job...]}``, or ``{"name", "yaml": text}`` to import a pipeline
    file (its jobs come back as ``jobs``; a file ``titan submit`` would refuse is a 400
    ``invalid_pipeline`` with the same message). Answers :func:`drafts.check`'s reply."""
    await reader(request)  # a session must send the CSRF token, as on every POST
    c = ctx(request)
    body = loads(await request.body())
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be an object", details={"field": "body"})
    name = body.get("name")
    imported: list[Data] | None = None
    jobs: list[Data]
    if "yaml" in body:
        if not isinstance(body["yaml"], str):
            raise ValidationFailed("yaml must be the pipeline file's text", details={"field": "yaml"})
        # Parsing is pure Python and the text may be large: off the event loop.
        name, jobs = await asyncio.to_thread(drafts.from_yaml, body["yaml"], name)
        imported = jobs
    else:
        given = body.get("jobs")
        if not isinstance(given, list) or not all(isinstance(j, dict) for j in given):
            raise ValidationFailed("jobs must be a list of job objects", details={"field": "jobs"})
        jobs = given
    wanted = drafts.wanted_scripts(jobs)

    def newest(tx: Transaction) -> dict[str, str]:
        rows = {n: tx.latest_file(name=n) for n in wanted}
        return {n: row["sha256"] for n, row in rows.items() if row is not None}

    scripts = await c.engine.read(newest) if wanted else {}
    reply = await asyncio.to_thread(drafts.check, name, jobs, scripts,
                                    max_jobs=c.config.max_dag_jobs)
    reply["name"] = name
    if imported is not None:
        reply["jobs"] = imported
    return JSONResponse(reply)
