"""Names that become paths, object keys or URL segments are checked to their very end: a
`$`-anchored pattern also accepts a trailing newline ("abc\\n"), which then reached a file
name, an object key or a URL."""

from __future__ import annotations

import pytest

from titan.errors import ValidationFailed
from titan.storage.blobs.base import check_sha256

SHA = "a" * 64


def test_a_blob_name_with_a_trailing_newline_is_not_a_sha256() -> None:
    assert check_sha256(SHA) == SHA
    with pytest.raises(ValidationFailed, match="is not a sha256"):
        check_sha256(SHA + "\n")


def test_a_dag_job_whose_script_hash_ends_in_a_newline_is_refused() -> None:
    from titan.master.scheduling.validation import validate_dag

    job = {"job_id": "a", "filename": "a.py", "script_sha256": SHA}
    validate_dag("d", [job], max_jobs=10)
    with pytest.raises(ValidationFailed, match="script_sha256"):
        validate_dag("d", [{**job, "script_sha256": SHA + "\n"}], max_jobs=10)


def test_an_action_id_with_a_trailing_newline_is_refused() -> None:
    from titan.master.runs.ingest import _ID

    assert _ID.match("act-1") and not _ID.match("act-1\n")


def test_an_http_readiness_path_with_a_trailing_newline_is_refused() -> None:
    from titan.services import readiness_problem

    assert readiness_problem("http:/healthz") is None
    assert readiness_problem("http:/healthz\n") is not None
