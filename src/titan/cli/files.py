"""The ``titan files`` commands: upload a file or a project folder, list files, get (download)
one, rm one (every version, or all but the newest).

A project folder is what an archive job runs from (``is_archive: true`` in a pipeline, its
``file`` ``<project>/<entry.py>``): its siblings travel with it and import as they do at home.
Without this command only the SDK (``upload_project_folder``) could put one on the master, so a
pipeline of archive jobs could not be run from the shell alone.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from titan.cli.options import aliased, whole


def add_arguments(p: argparse.ArgumentParser, common: list[argparse.ArgumentParser]) -> None:
    """The ``titan files`` actions and their options (``titan.cli`` wires the command in)."""
    files = p.add_subparsers(dest="files_command", metavar="ACTION", required=True)
    s = files.add_parser(
        "upload", parents=common, help="upload a file, or a project folder for archive jobs",
        description="Upload a file under its name, or a folder as the project <name>.zip "
                    "(caches and VCS folders left out; a symlink pointing out of the folder "
                    "refused) that archive jobs run from: in a "
                    "pipeline, `file: <name>/<entry.py>` with `is_archive: true`. Uploading "
                    "again replaces it for the jobs that start from then on.")
    s.add_argument("path", help="a file, or a project folder")
    s.add_argument("--name", default=None,
                   help="a folder's project name (default: the folder's own name)")
    s = aliased(
        files, "list", ["ls"], "files_command", parents=common, help="list files, newest first",
        description="List the stored file versions, newest first: name, size, sha256, when "
                    "and by whom each was uploaded or published (the token's name, or a "
                    "job's dag#run/job; - for one stored before Titan recorded it).")
    s.add_argument("--limit", type=whole(1, 10_000), default=50,
                   help="at most this many (1 to 10000, default 50)")
    s = aliased(files, "get", ["download"], "files_command", parents=common,
                help="download the latest file of a name (an artifact, a project)")
    s.add_argument("name")
    s.add_argument("-o", "--output", default=None,
                   help="where to write it (a folder: inside it; -: standard output; "
                        "default: ./NAME)")
    s = aliased(
        files, "rm", ["delete"], "files_command", parents=common, help="delete every version of a file (operator or admin)",
        description="Delete every version of the file NAME (uploads, project archives, and "
                    "artifacts published under that name whatever their key), or with "
                    "--keep-latest every version but the newest. A store key whose newest "
                    "artifact goes is moved to the newest left, or deleted. The bytes leave "
                    "the blob store with its garbage collection, once nothing names them "
                    "(titan admin blobs gc). Asks first on a terminal, unless --yes.")
    s.add_argument("name")
    s.add_argument("--keep-latest", action="store_true",
                   help="keep the newest version, delete the older ones")
    s.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")


def run(args: argparse.Namespace, client: Any) -> int:
    from titan.cli.output import print_json

    if args.files_command == "upload":
        return _upload(args, client)
    if args.files_command == "rm":
        return _remove(args, client)
    if args.files_command == "get":  # whichever was typed, get or download (options.aliased)
        if args.output == "-":  # as `titan store put KEY -`: a file literally named "-" was
            # written; the bytes are all that go to stdout (no path, no JSON after them)
            client.fetch_artifact(args.name, sys.stdout.buffer)
            return 0
        written = client.fetch_artifact(args.name, args.output)
        if getattr(args, "json", False):
            print_json({"name": args.name, "path": str(written)})
        else:
            print(written)
        return 0
    reply = client.api("GET", "/files", params={"limit": args.limit})
    if getattr(args, "json", False):
        print_json(reply)
        return 0
    from titan.cli.output import table, when

    table(["NAME", "SIZE", "SHA256", "UPLOADED", "BY"],
          [[f["name"], _size(f.get("size")), (f.get("sha256") or "")[:12],
            when(f.get("created_at")), _author(f)]
           for f in reply["files"]])
    if reply.get("next") is not None:
        print(f"(the newest {len(reply['files'])}; --limit to see more)")
    return 0


def _author(f: dict[str, Any]) -> str:
    """Who uploaded a version: its token's name or its job's ``dag#run/job``; one stored
    before Titan recorded that, the job's id if a job's token stored it, else ``-``."""
    if f.get("created_by"):
        return str(f["created_by"])
    return f"job {f['job_id']}" if f.get("job_id") else "-"


def _upload(args: argparse.Namespace, client: Any) -> int:
    from titan.cli.output import print_json

    path = Path(os.path.expanduser(args.path))
    folder = path.is_dir()
    if folder:
        reply = client.upload_project_folder(path, args.name)
    else:
        if args.name is not None:
            from titan.errors import ConfigError

            raise ConfigError("--name names a project folder; a file keeps its own name")
        reply = client.upload_file(path)
    if getattr(args, "json", False):
        print_json(reply)
        return 0
    print(f"uploaded {reply['name']} ({_size(reply.get('size'))}, sha256 "
          f"{(reply.get('sha256') or '')[:12]})")
    if folder:
        project = reply["name"].removesuffix(".zip")
        print(f"archive jobs run from it as `file: {project}/<entry.py>` with "
              "`is_archive: true`")
    return 0


def _remove(args: argparse.Namespace, client: Any) -> int:
    from titan.cli.output import cell, confirm, print_json

    what = ("every version but the newest" if args.keep_latest else "every version") \
        + f" of {cell(args.name)}"
    if not confirm(f"delete {what}", args.yes):
        return 1
    reply = client.delete_file(args.name, keep_latest=args.keep_latest)
    if getattr(args, "json", False):
        print_json(reply)
        return 0
    print(f"deleted {reply['deleted']} version(s) of {cell(args.name)} "
          f"({_size(reply.get('bytes'))}); {reply['kept']} kept")
    for key, value in sorted(reply.get("store", {}).items()):
        print(f"  store key {cell(key)}: " + ("deleted" if value is None
                                              else f"now names {cell(value)}"))
    return 0


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    units = ("B", "KB", "MB", "GB")
    size, step = float(n), 0
    while size >= 1024 and step < len(units) - 1:
        size, step = size / 1024, step + 1
    return f"{n} B" if step == 0 else f"{size:.1f} {units[step]}"
