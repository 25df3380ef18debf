"""TITAN_BLOB_STORE, TITAN_BLOB_DIR and TITAN_S3_ENDPOINT_URL: read together, refused early;
and TITAN_BLOB_GC, the garbage collection's grace period."""

from __future__ import annotations

from pathlib import Path

import pytest

from titan.errors import ConfigError
from titan.master.config import MasterConfig
from titan.storage.blobs import BlobSettings

PG = "postgresql+psycopg://titan@db/titan"
SQLITE = "sqlite:////srv/titan/titan.db"


def parse(store: str | None = None, blob_dir: str | None = None, endpoint: str | None = None,
          database_url: str = PG) -> BlobSettings:
    return BlobSettings.parse(store, blob_dir, endpoint, data_dir=Path("/srv/titan"),
                              database_url=database_url)


def test_the_default_is_the_data_dirs_blobs_directory() -> None:
    for unset in (None, "", "directory"):
        settings = parse(unset, database_url=SQLITE)
        assert (settings.kind, settings.directory) == ("directory", Path("/srv/titan/blobs"))


def test_a_shared_directory(tmp_path: Path) -> None:
    settings = parse(blob_dir=str(tmp_path / "nfs" / "blobs"))
    assert (settings.kind, settings.directory) == ("directory", tmp_path / "nfs" / "blobs")


def test_the_database_store_is_for_postgresql() -> None:
    assert parse("database").kind == "database"
    with pytest.raises(ConfigError, match="PostgreSQL"):
        parse("database", database_url=SQLITE)


def test_an_s3_url() -> None:
    settings = parse("s3://team-bucket/titan/blobs/", endpoint="http://minio:9000")
    assert (settings.kind, settings.bucket, settings.prefix, settings.endpoint_url) == (
        "s3", "team-bucket", "titan/blobs", "http://minio:9000")
    assert parse("s3://team-bucket").prefix == ""


@pytest.mark.parametrize(("store", "blob_dir", "endpoint", "message"), [
    ("s3://", None, None, "names no bucket"),
    ("nfs", None, None, "must be directory, database or s3"),
    ("database", "/mnt/blobs", None, "TITAN_BLOB_DIR"),
    (None, None, "http://minio:9000", "TITAN_S3_ENDPOINT_URL"),
])
def test_settings_that_cannot_work_are_one_line_errors(store: str | None, blob_dir: str | None,
                                                      endpoint: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(store, blob_dir, endpoint)


def test_the_master_checks_them_before_it_starts(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("TITAN_BLOB_STORE", "database")
    config = MasterConfig(data_dir=str(tmp_path))  # SQLite by default
    with pytest.raises(ConfigError, match="TITAN_BLOB_STORE=database"):
        config.check()


@pytest.mark.parametrize(("env", "said"), [
    ({"TITAN_EGRESS_ALLOW": "10.0.0.0/33"}, "TITAN_EGRESS_ALLOW"),
    ({"TITAN_EGRESS_DENY": ":::::"}, "TITAN_EGRESS_DENY"),
    ({"TITAN_BLOB_DIR": "/etc/hostname"}, "cannot open the blob store"),
])
def test_what_the_apps_startup_opens_is_tried_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], said: str) -> None:
    # Inside the app's startup a bad one was a 60-line traceback and exit status 3.
    from titan.master import preflight
    from titan.storage import open_storage

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = MasterConfig(data_dir=str(tmp_path / "data"), blob_dir=env.get("TITAN_BLOB_DIR"))
    storage = open_storage(f"sqlite:///{tmp_path / 'titan.db'}")
    try:
        with pytest.raises(ConfigError, match=said):
            preflight.check(config, storage)
    finally:
        storage.close()


@pytest.mark.parametrize(("settings", "said"), [
    ({"dashboard_port": 70000}, "dashboard's port"),
    ({"default_retries": 10**30},
     "TITAN_DEFAULT_RETRIES must be a whole number 0 to 100, got a 31-digit number$"),
    ({"leader_timeout": 7200}, "TITAN_LEADER_TIMEOUT must be 1 to 3600 seconds, got 7200$"),
    ({"events_ping_seconds": 0}, "TITAN_EVENTS_PING must be 0.2 to 3600"),
])
def test_settings_out_of_range_are_refused(settings: dict[str, int], said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        MasterConfig(**settings).check()  # type: ignore[arg-type]


def test_blob_garbage_collection_is_on_with_a_day_of_grace_unless_turned_off(
        tmp_path: Path) -> None:
    def config(value: str | None) -> MasterConfig:
        return MasterConfig(data_dir=str(tmp_path), blob_gc=value)

    assert config(None).blob_gc_min_age == config("").blob_gc_min_age == "1d"
    assert config("12h").blob_gc_min_age == "12h"
    for off in ("off", "OFF", "0", "no", "false"):
        assert config(off).blob_gc_min_age is None
        config(off).check()
    for bad in ("30m", "1w", "forever"):
        with pytest.raises(ConfigError, match="TITAN_BLOB_GC"):
            config(bad).check()
