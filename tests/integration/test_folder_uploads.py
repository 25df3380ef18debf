"""Uploading a project folder sends what is in it and nothing else: a symlink pointing outside
(``settings.cfg -> ~/.aws/credentials`` in a cloned repository) is refused by the SDK and by
``titan files upload``, before anything is sent; links inside are sent as what they name."""

from __future__ import annotations

import io
import os
import textwrap
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import Cluster, shared_cluster
from tests.integration.test_cli import titan
from titan import TitanJob
from titan.errors import NotFound, ValidationFailed

cluster = shared_cluster(slots=1)


def _repo(tmp_path: Path) -> tuple[Path, Path]:
    secret = tmp_path / "fake_home_secret"
    secret.write_text("AWS_SECRET=supersecret\n")
    repo = tmp_path / "cloned_repo"
    (repo / "lib").mkdir(parents=True)
    (repo / "main.py").write_text("print('hi')\n")
    (repo / "lib" / "helper.py").write_text("X = 1\n")
    return repo, secret


def _archive(cluster: Cluster, name: str) -> zipfile.ZipFile:
    reply = httpx.get(f"{cluster.url}/api/v1/files/{name}",
                      headers={"Authorization": f"Bearer {cluster.admin_token}"})
    assert reply.status_code == 200, reply.text
    return zipfile.ZipFile(io.BytesIO(reply.content))


@pytest.mark.parametrize("link", ["absolute", "relative", "folder"])
def test_a_symlink_out_of_the_folder_is_refused_and_nothing_uploaded(
        cluster: Cluster, tmp_path: Path, link: str) -> None:
    repo, secret = _repo(tmp_path)
    if link == "absolute":
        (repo / "settings.cfg").symlink_to(secret)
        name, target = "settings.cfg", secret
    elif link == "relative":
        (repo / "lib" / "notes.txt").symlink_to("../../fake_home_secret")
        name, target = "lib/notes.txt", secret
    else:  # a folder: its files were dropped silently before; outside, it is refused too
        (repo / "home").symlink_to(tmp_path)
        name, target = "home", tmp_path
    client = cluster.client()
    project = f"leak-{link}"
    with pytest.raises(ValidationFailed) as info:
        client.upload_project_folder(repo, project)
    message = str(info.value)
    assert f"{name} in {repo} is a symlink to {target}, outside the folder" in message
    assert "\n" not in message
    assert info.value.details["link"] == name and info.value.details["target"] == str(target)
    with pytest.raises(NotFound):
        client.fetch_artifact(f"{project}.zip", tmp_path / "got.zip")

    out = titan(cluster, "files", "upload", str(repo), "--name", project, check=False)
    assert out.returncode != 0
    assert f"{name} in {repo} is a symlink to {target}" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert titan(cluster, "files", "get", f"{project}.zip", "-o", str(tmp_path / "x.zip"),
                 check=False).returncode != 0


def test_symlinks_inside_the_folder_are_sent_as_what_they_name(cluster: Cluster,
                                                                tmp_path: Path) -> None:
    repo, _ = _repo(tmp_path)
    (repo / "alias.py").symlink_to("main.py")
    (repo / "shared").symlink_to("lib")  # a folder: its files under the link's name
    (repo / "gone.txt").symlink_to(tmp_path / "nothing-here")  # a link to nothing: left out
    # A skipped folder is not looked into, wherever it points: a virtualenv linked in.
    (repo / ".venv").symlink_to(tmp_path)
    reply = cluster.client().upload_project_folder(repo, "linked")
    archive = _archive(cluster, reply["name"])
    assert sorted(archive.namelist()) == ["alias.py", "lib/helper.py", "main.py",
                                          "shared/helper.py"]
    assert archive.read("alias.py") == b"print('hi')\n"
    assert archive.read("shared/helper.py") == b"X = 1\n"


def test_a_folder_linked_into_itself_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    repo, _ = _repo(tmp_path)
    (repo / "lib" / "up").symlink_to("..")
    with pytest.raises(ValidationFailed, match=r"lib/up in .* is a symlink to .*cloned_repo, "
                                               r"a folder that holds it"):
        cluster.client().upload_project_folder(repo, "loop")


def test_a_folder_given_as_a_link_is_uploaded_from_its_target(cluster: Cluster,
                                                              tmp_path: Path) -> None:
    repo, _ = _repo(tmp_path)
    (repo / "inner.py").symlink_to(repo / "main.py")  # absolute, but inside
    link = tmp_path / "project-link"
    os.symlink(repo, link)
    reply = cluster.client().upload_project_folder(link, "via-link")
    assert sorted(_archive(cluster, reply["name"]).namelist()) == [
        "inner.py", "lib/helper.py", "main.py"]


def test_a_job_that_submits_a_sibling_script_is_told_how_to_bring_it(cluster: Cluster,
                                                                        tmp_path: Path) -> None:
    """A plain script travels alone: a job submitting the file beside it on the submitter's
    disk finds nothing on the worker. The error names the file, says why it is not there
    and what to do; doing it (the folder as a project) works."""
    folder = tmp_path / "orchestra"
    folder.mkdir()
    (folder / "sibling_step.py").write_text("print('the sibling ran')\n")
    (folder / "conduct.py").write_text(textwrap.dedent("""
        from titan import TitanClient, TitanJob
        from titan.errors import ScriptNotFound
        try:
            dag = TitanClient().submit_dag(
                "sibling-step", [TitanJob(job_id="step", filename="sibling_step.py")])
        except ScriptNotFound as exc:
            print("REFUSED " + str(exc))
        else:
            print("SUBMITTED " + dag["ref"])
    """))
    client = cluster.client()

    def said(dag_name: str, job: TitanJob) -> str:
        ref = client.submit_dag(dag_name, [job])["ref"]
        assert client.wait(f"{ref}/c", timeout=60)["state"] == "COMPLETED"
        logs = client.fetch_logs(f"{ref}/c")
        return next(x for x in logs.splitlines() if x.startswith(("REFUSED", "SUBMITTED")))

    plain = said("sibling-plain", TitanJob(job_id="c", filename=str(folder / "conduct.py")))
    assert plain.startswith("REFUSED "), plain
    assert "'sibling_step.py'" in plain and "\n" not in plain
    assert "only its own script" in plain, plain  # why it is not there
    assert "upload_project_folder" in plain and "is_archive=True" in plain, plain  # what to do
    assert "titan files upload FOLDER --name NAME" in plain, plain

    client.upload_project_folder(folder, "orchestra")
    project = said("sibling-project", TitanJob(job_id="c", filename="orchestra/conduct.py",
                                               is_archive=True))
    assert project.startswith("SUBMITTED "), project
    step = project.split()[1] + "/step"
    assert client.wait(step, timeout=60)["state"] == "COMPLETED"
    assert "the sibling ran" in client.fetch_logs(step)
