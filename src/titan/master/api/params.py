"""Integer query and path parameters, bounded to what the database can hold.

SQLite and PostgreSQL store integers in 64 bits; a larger one reached them as an
``OverflowError`` (a 500). Every integer parameter that becomes an id, an offset or a sequence
number uses one of these types, so FastAPI refuses it with a 400 naming the parameter.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from titan.master.api.body import INT64_MAX

Offset = Annotated[int, Query(ge=0, le=INT64_MAX, description="Rows to skip (paging)")]
After = Annotated[int, Query(ge=0, le=INT64_MAX,
                             description="Only entries after this sequence number")]
MaybeAfter = Annotated[int | None, Query(ge=0, le=INT64_MAX,
                                         description="Only entries after this sequence number")]
Attempt = Annotated[int | None, Query(ge=1, le=INT64_MAX,
                                      description="Attempt number (default: the latest)")]
DagFilter = Annotated[int | None, Query(ge=1, le=INT64_MAX, description="Only this DAG run's")]
Seq = Annotated[int, Path(ge=0, le=INT64_MAX, description="The action's sequence number")]
