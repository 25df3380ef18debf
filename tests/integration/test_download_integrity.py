"""A download is checked against the sha256 the master sends with it: a blob changed on the
master's disk (same size, other bytes) is refused by ``fetch_artifact``, ``get_artifact``,
``read_artifact`` and ``titan files get`` with ``DownloadCorrupt``, and the target is left as
it was — not created, not replaced."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.harness import Cluster, shared_cluster
from tests.integration.test_cli import titan
from titan.errors import DownloadCorrupt

cluster = shared_cluster(slots=1)


def test_a_blob_changed_on_the_masters_disk_is_refused(cluster: Cluster,
                                                       tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(b"weights " * 4096)
    client = cluster.client()
    sha = client.publish_artifact("integrity:model", src)["sha256"]
    # Whole and untouched, it downloads.
    assert Path(client.get_artifact("integrity:model", tmp_path / "ok.bin")).read_bytes() \
        == src.read_bytes()

    blob = cluster.data / "blobs" / sha[:2] / sha
    os.chmod(blob, 0o600)
    blob.write_bytes(b"WEIGHTS " * 4096)  # the same size: nothing but its hash tells

    kept = tmp_path / "kept.bin"
    kept.write_bytes(b"the previous download")
    for download in (lambda: client.get_artifact("integrity:model", kept),
                     lambda: client.fetch_artifact("model.bin", kept)):
        with pytest.raises(DownloadCorrupt) as info:
            download()
        assert str(info.value).startswith(f"the download to {kept} is not what the master "
                                          f"stored: its sha256 is ")
        assert f"the master's record says {sha[:16]}…" in str(info.value)
        assert info.value.expected == sha and info.value.got != sha
        assert kept.read_bytes() == b"the previous download"
    with pytest.raises(DownloadCorrupt, match="^artifact 'integrity:model' is not what"):
        client.read_artifact("integrity:model")

    fresh = tmp_path / "fresh.bin"
    out = titan(cluster, "files", "get", "model.bin", "-o", str(fresh), check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith(f"error: the download to {fresh} is not what the master stored")
    assert len(out.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.bin", "model.bin", "ok.bin"]
    # To standard output the bytes are out before the check: it says so, and fails.
    out = titan(cluster, "files", "get", "model.bin", "-o", "-", check=False)
    assert out.returncode == 1 and out.stdout == "WEIGHTS " * 4096
    assert out.stderr.startswith("error: the download to <stdout> is not what the master "
                                 "stored"), out.stderr
    assert out.stderr.endswith("; its bytes were written before the check: discard them\n")
