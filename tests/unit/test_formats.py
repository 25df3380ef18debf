"""One rule for names and one spelling of times, wherever Titan checks or writes them."""

from __future__ import annotations

import pytest

from titan.client.job import check_name as sdk_check
from titan.errors import ValidationFailed
from titan.formats import iso
from titan.master.scheduling.validation import check_name as master_check


@pytest.mark.parametrize("name", ["", "   ", "\t", "a/b", "a#b", "a\nb", "x" * 201, None, 3])
def test_the_sdk_and_the_master_refuse_the_same_names(name: object) -> None:
    with pytest.raises(ValidationFailed):
        sdk_check(name, "job id", "job_id")
    with pytest.raises(ValidationFailed):
        master_check(name, "job_id")


@pytest.mark.parametrize("name", ["plan", "x" * 200, "café ☕", " padded "])
def test_and_accept_the_same_names(name: str) -> None:
    assert sdk_check(name, "job id", "job_id") == master_check(name, "job_id") == name


def test_times_are_rfc3339_utc_with_z_everywhere() -> None:
    assert iso(1700000000.1234) == "2023-11-14T22:13:20.123Z"
    assert iso(None) == ""
    from titan.dashboard.render import env
    from titan.master.runs import export

    assert env.filters["iso"] is iso and export.iso is iso
