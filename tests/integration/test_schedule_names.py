"""Acceptance on a real `titan up`: a new schedule's name may not hold '%', '\\', '?' or ';'
(they break its URLs and the shell commands that name it), refused by the SDK, the CLI and
the API with a message naming the character; a DAG name keeps them."""

from __future__ import annotations

import json
import urllib.error

import pytest

from tests.integration.harness import Cluster
from tests.integration.test_cli import titan
from titan import TitanJob
from titan.errors import ValidationFailed


def test_a_schedule_name_that_breaks_urls_or_shells_is_refused_everywhere(
        cluster: Cluster) -> None:
    # 'a?b' was created and then could not be read back ('/schedules/a?b' is 'a' with a
    # query), and 'a;b' could not be named on a command line without quoting.
    script = cluster.script("tick.py", "print('tick')\n")
    pipeline = cluster.script("tick.yaml", "name: tick\njobs:\n  - id: tick\n    file: tick.py\n")
    client = cluster.client()
    job = TitanJob(job_id="tick", filename=script)
    jobs = client.schedule_dag("tick", [job], cron="0 3 * * *", paused=True,
                               dag_name="a;b%c?d")["jobs"]  # a DAG name may hold them
    for char in "%\\?;":
        name = f"a{char}b"
        said = f"may not contain {char!r}"
        with pytest.raises(ValidationFailed, match=said.replace("\\", "\\\\")) as sdk:
            client.schedule_dag(name, [job], cron="0 3 * * *")
        assert sdk.value.details == {"field": "name"}
        with pytest.raises(urllib.error.HTTPError) as api:
            cluster.api("POST", "/schedules", {"name": name, "cron": "0 3 * * *",
                                               "dag_name": "tick", "jobs": jobs})
        assert api.value.code == 400
        error = json.loads(api.value.read())["error"]
        assert said in error["message"] and error["details"] == {"field": "name"}, error
        cli = titan(cluster, "schedule", "create", name, pipeline, "--cron", "0 3 * * *",
                    check=False)
        assert cli.returncode != 0 and f"{name!r} {said}" in cli.stderr, cli.stderr
    assert [s["name"] for s in client.list_schedules()] == ["tick"]
