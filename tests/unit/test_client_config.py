"""Master discovery order, token lookup and record_master — never touching the real ~/.titan."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from titan.client import TitanClient
from titan.client.config import (
    Endpoint,
    config_path,
    resolve,
    token_for,
)
from titan.client.master_record import forget_master, record_master
from titan.errors import ConfigError


@pytest.fixture(autouse=True)
def isolated(clean_client_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tmp_path = clean_client_env
    (tmp_path / "home").mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def write_data_dir(directory: Path, url: str, token: str | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "master.json").write_text(json.dumps({"url": url}))
    if token is not None:
        (directory / "admin.token").write_text(token + "\n")


def test_default_is_loopback_9090() -> None:
    ep = resolve()
    assert (ep.url, ep.host, ep.port, ep.token) == ("http://127.0.0.1:9090", "127.0.0.1", 9090,
                                                    None)
    assert ep.api_url == "http://127.0.0.1:9090/api/v1"


def test_explicit_arguments_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_URL", "http://env:1")
    write_data_dir(Path(".titan"), "http://local:2", "t-local")
    ep = resolve(host="localhost", port=9191, token="t-arg")
    assert (ep.url, ep.token, ep.source) == ("http://localhost:9191", "t-arg", "arguments")


def test_host_may_be_a_url_and_port_alone_keeps_default_host() -> None:
    assert resolve(host="https://titan.example.com").url == "https://titan.example.com:443"
    assert resolve(host="http://h:1234").port == 1234
    assert resolve(port=9999).url == "http://127.0.0.1:9999"


def test_env_url_then_host_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_HOST", "envhost")
    monkeypatch.setenv("TITAN_PORT", "7000")
    assert resolve().url == "http://envhost:7000"
    monkeypatch.setenv("TITAN_URL", "http://urlhost:7001/")
    monkeypatch.setenv("TITAN_TOKEN", "t-env")
    ep = resolve()
    assert (ep.url, ep.token, ep.source) == ("http://urlhost:7001", "t-env", "TITAN_URL")


def test_bad_env_port_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_PORT", "ninety")
    with pytest.raises(ConfigError, match="TITAN_PORT"):
        resolve()


def test_a_subfolder_finds_the_projects_data_dir_above_it(
        isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # From a subfolder of the project where `titan up` runs, the CLI used to fall through to
    # the user config's default: whichever master was started last on the machine.
    write_data_dir(isolated / "work" / ".titan", "http://127.0.0.1:9300", "t-project")
    (isolated / "home" / ".titan").mkdir(parents=True, exist_ok=True)
    sub = isolated / "work" / "src" / "pkg"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    ep = resolve()
    assert (ep.url, ep.token) == ("http://127.0.0.1:9300", "t-project")
    assert ep.source == str(isolated / "work" / ".titan")
    # The nearest one wins; a .titan without master.json (a config dir) is no data dir.
    write_data_dir(isolated / "work" / "src" / ".titan", "http://127.0.0.1:9301", "t-near")
    (sub / ".titan").mkdir()
    assert resolve().url == "http://127.0.0.1:9301"


def test_a_data_dir_another_user_could_have_planted_is_ignored(
        isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A .titan in a shared folder above the work, written by someone else, sent the user's
    # token, store values and scripts to the planter's fake master.
    write_data_dir(isolated / ".titan", "http://127.0.0.1:9300", "t-mine")
    planted = isolated / "work" / ".titan"
    write_data_dir(planted, "http://127.0.0.1:6666")
    planted.chmod(0o777)  # anyone may write it: it may be anyone's
    with pytest.warns(UserWarning, match="may be written by other users"):
        assert resolve().url == "http://127.0.0.1:9300"  # the user's own, further up
    planted.chmod(0o755)
    (planted / "master.json").chmod(0o666)
    with pytest.warns(UserWarning, match="master.json may be written by other users"):
        assert resolve().url == "http://127.0.0.1:9300"
    (planted / "master.json").chmod(0o644)
    assert resolve().url == "http://127.0.0.1:6666"  # the user's own after all
    if os.getuid() == 0:  # another owner can only be made by root
        os.chown(planted, 65534, 65534)
        with pytest.warns(UserWarning, match="belongs to another user"):
            assert resolve().url == "http://127.0.0.1:9300"
        # Named on purpose, it is used whoever owns it.
        monkeypatch.setenv("TITAN_DATA_DIR", str(planted))
        with pytest.warns(UserWarning, match="belongs to another user"):  # no token there:
            assert resolve().url == "http://127.0.0.1:6666"  # looked for further, not used


def test_a_planted_data_dir_in_the_current_folder_is_ignored_too(isolated: Path) -> None:
    """The check held for a .titan above the work, but one planted in the current folder
    itself was the walk's fallback: "ignoring .../.titan" was said, and its master.json and
    admin.token were used all the same (a docs walkthrough: `cd` into a shared folder). It
    is ignored as said: with nothing else, the default address, and no token of its."""
    planted = isolated / "work" / ".titan"
    write_data_dir(planted, "http://127.0.0.1:6666", "t-planter")
    planted.chmod(0o777)
    with pytest.warns(UserWarning, match="ignoring .* may be written by other users"):
        ep = resolve()
    assert (ep.url, ep.token, ep.source) == ("http://127.0.0.1:9090", None, "default")
    with pytest.warns(UserWarning, match="ignoring"):
        assert token_for("http://127.0.0.1:6666") is None


def test_the_dashboard_port_finds_the_masters_token(isolated: Path) -> None:
    # `titan status --port 5000` (the dashboard's port, which serves the same API) said no
    # token was found and to run `titan up`, which was running.
    directory = isolated / "work" / ".titan"
    write_data_dir(directory, "http://127.0.0.1:9300", "t-project")
    data = json.loads((directory / "master.json").read_text())
    (directory / "master.json").write_text(json.dumps({**data, "dashboard_port": 9301}))
    assert resolve(port=9301).token == "t-project"
    assert resolve(port=9302).token is None


def test_data_dir_env_before_local_dir(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_data_dir(Path(".titan"), "http://127.0.0.1:9300", "t-local")
    ep = resolve()
    assert (ep.url, ep.token) == ("http://127.0.0.1:9300", "t-local")
    other = isolated / "data"
    write_data_dir(other, "http://127.0.0.1:9400", "t-data")
    monkeypatch.setenv("TITAN_DATA_DIR", str(other))
    ep = resolve()
    assert (ep.url, ep.token, ep.source) == ("http://127.0.0.1:9400", "t-data", str(other))


def test_user_config_default_and_token(isolated: Path) -> None:
    cfg = isolated / "home" / ".titan"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({
        "default": "http://10.0.0.5:9090",
        "masters": {"http://10.0.0.5:9090": {"token": "t-user"}},
    }))
    ep = resolve()
    assert (ep.url, ep.token) == ("http://10.0.0.5:9090", "t-user")


def test_config_dir_override(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    custom = isolated / "cfg"
    monkeypatch.setenv("TITAN_CONFIG_DIR", str(custom))
    assert config_path() == custom / "config.json"


def test_token_looked_up_for_explicit_host_with_loopback_aliases(isolated: Path) -> None:
    record_master("http://127.0.0.1:9090", "t-up", isolated / "elsewhere")
    ep = resolve(host="localhost", port=9090)
    assert ep.token == "t-up"
    assert resolve(host="127.0.0.1", port=9091).token is None


def test_token_from_env_beats_recorded(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record_master("http://127.0.0.1:9090", "t-up", isolated / "d")
    monkeypatch.setenv("TITAN_TOKEN", "t-job")
    assert resolve(host="127.0.0.1", port=9090).token == "t-job"


def test_token_from_matching_data_dir() -> None:
    write_data_dir(Path(".titan"), "http://127.0.0.1:9500", "t-dir")
    assert token_for("http://localhost:9500") == "t-dir"
    assert resolve(port=9500).token == "t-dir"


def test_record_master_writes_files_with_private_mode(isolated: Path) -> None:
    data = isolated / "data"
    path = record_master("http://127.0.0.1:9090", "secret", data)
    assert json.loads((data / "master.json").read_text()) == {
        "url": "http://127.0.0.1:9090", "host": "127.0.0.1", "port": 9090}
    assert path == isolated / "home" / ".titan" / "config.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    config = json.loads(path.read_text())
    assert config == {"default": "http://127.0.0.1:9090",
                      "masters": {"http://127.0.0.1:9090": {"token": "secret"}}}


def test_record_master_keeps_other_masters(isolated: Path) -> None:
    record_master("http://10.0.0.1:9090", "one", isolated / "a")
    record_master("http://127.0.0.1:9191", "two", isolated / "b")
    config = json.loads(config_path().read_text())
    assert config["default"] == "http://127.0.0.1:9191"
    assert config["masters"]["http://10.0.0.1:9090"] == {"token": "one"}
    assert config["masters"]["http://127.0.0.1:9191"] == {
        "token": "two", "previous_default": "http://10.0.0.1:9090"}


def test_record_master_refuses_corrupt_config(isolated: Path) -> None:
    cfg = isolated / "home" / ".titan"
    cfg.mkdir()
    (cfg / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"config\.json.*not valid JSON"):
        record_master("http://127.0.0.1:9090", "t", isolated / "d")
    assert (cfg / "config.json").read_text() == "{not json"


def test_corrupt_master_file_names_the_file() -> None:
    Path(".titan").mkdir()
    Path(".titan/master.json").write_text("[]")
    with pytest.raises(ConfigError, match=r"master\.json"):
        resolve()


@pytest.mark.parametrize("name", ["master.json", "config.json"])
def test_a_config_file_that_is_not_text_names_the_file(isolated: Path, name: str) -> None:
    # Bytes that are not UTF-8 (the user config holds each master's token) were a
    # UnicodeDecodeError traceback from every CLI command, as a binary admin.token was.
    folder = Path(".titan") if name == "master.json" else isolated / "home" / ".titan"
    folder.mkdir()
    (folder / name).write_bytes(b"\xff\xfe{}")
    with pytest.raises(ConfigError, match=rf"{name}.* is not valid JSON \(it is not UTF-8 "
                       r"text\); fix or delete the file"):
        resolve()


def test_invalid_urls_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        resolve(host="ftp://x:1")
    for path in ("/api", "/api/v2", "/api/v1/dags", "/v1"):
        with pytest.raises(ConfigError, match="without a path"):
            resolve(host=f"http://x:1{path}")
    with pytest.raises(ConfigError):
        resolve(port=70000)


@pytest.mark.parametrize("host", ["a b", "ex ample.com", "a%20b", "tab\there", "x<y>", 'q"uote'])
def test_a_host_that_is_no_host_is_refused_at_once(host: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # 'a b' was tried as it was, and failed only after the client's retries, read as a master
    # that is down ("is `titan up` running?").
    said = "a tab or a line break" if "\t" in host else "is no host name or address"
    with pytest.raises(ConfigError, match=said):
        resolve(host=host, token="t")
    monkeypatch.setenv("TITAN_HOST", host)
    with pytest.raises(ConfigError, match=rf"{said}.*\(from TITAN_HOST="):
        resolve(token="t")
    monkeypatch.setenv("TITAN_HOST", "[fe80::1%25eth0]:9091")  # an IPv6 zone keeps its %
    assert resolve(token="t").url.endswith(":9091")


def test_the_api_base_url_names_the_master(monkeypatch: pytest.MonkeyPatch) -> None:
    # A master's banner printed http://HOST:PORT/api/v1, and every client refused it ("give
    # the server's root URL, without a path"): the API's base is read as the master's root.
    for given in ("http://x:1/api/v1", "http://x:1/api/v1/"):
        assert resolve(host=given).url == "http://x:1"
    for given in ("http://x:1/api/v1", "http://x:1/api/v1/", "x:1/api/v1"):
        assert resolve(urls=[given, "http://y:2/api/v1"]).urls == ("http://x:1", "http://y:2")
    monkeypatch.setenv("TITAN_URL", "https://x/api/v1/")
    assert resolve().url == "https://x:443"
    monkeypatch.setenv("TITAN_MASTER_URLS", "http://a:1/api/v1,http://b:1")
    assert resolve().urls == ("http://a:1", "http://b:1")


# ---------------------------------------------------------------------------- several masters


def test_several_urls_as_a_list_or_comma_separated() -> None:
    for given in (["http://a:8765", "http://b:8765/"], "http://a:8765, http://b:8765",
                  ["http://a:8765,http://b:8765"]):
        ep = resolve(urls=given)
        assert (ep.url, ep.host, ep.port) == ("http://a:8765", "a", 8765)
        assert ep.urls == ("http://a:8765", "http://b:8765")
        assert ep.source == "arguments"


def test_the_same_master_twice_is_kept_once_in_its_first_place() -> None:
    ep = resolve(urls="http://localhost:9090,b:9091,http://127.0.0.1:9090")
    assert ep.urls == ("http://localhost:9090", "http://b:9091")


def test_urls_exclude_host_and_take_a_port_only_alone() -> None:
    with pytest.raises(ConfigError, match="not both"):
        resolve(host="a", urls="http://b:1")
    assert resolve(port=7000, urls="http://b:1").urls == ("http://b:7000",)
    with pytest.raises(ConfigError, match="several master URLs"):
        resolve(port=7000, urls="http://a:1,http://b:1")


def test_a_bad_url_in_a_list_is_named() -> None:
    with pytest.raises(ConfigError, match=r"'ftp://b:1'.*the master URLs given"):
        resolve(urls="http://a:1,ftp://b:1")
    with pytest.raises(ConfigError, match="names no Titan master URL"):
        resolve(urls=" , ")
    assert resolve(urls=[]).source == "default"  # nothing given: discovered


def test_env_list_beats_titan_url_and_host_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_URL", "http://single:1")
    monkeypatch.setenv("TITAN_HOST", "envhost")
    monkeypatch.setenv("TITAN_MASTER_URLS", "http://a:8765,http://b:8765")
    ep = resolve()
    assert (ep.url, ep.urls, ep.source) == (
        "http://a:8765", ("http://a:8765", "http://b:8765"), "TITAN_MASTER_URLS")
    # Explicit arguments still come first.
    assert resolve(host="http://arg:2").urls == ("http://arg:2",)
    # Empty means unset, like TITAN_URL.
    monkeypatch.setenv("TITAN_MASTER_URLS", "")
    assert resolve().url == "http://single:1"


def test_a_bad_env_list_is_a_config_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_MASTER_URLS", "http://a:1,http://b:1/api")
    with pytest.raises(ConfigError, match=r"'http://b:1/api'.*TITAN_MASTER_URLS"):
        resolve()
    monkeypatch.setenv("TITAN_MASTER_URLS", " , ")
    with pytest.raises(ConfigError, match="TITAN_MASTER_URLS names no Titan master URL"):
        resolve()


def test_user_config_default_may_be_a_list(isolated: Path) -> None:
    cfg = isolated / "home" / ".titan"
    cfg.mkdir()
    path = cfg / "config.json"
    path.write_text(json.dumps({
        "default": ["http://10.0.0.5:8765", "http://10.0.0.6:8765"],
        "masters": {"http://10.0.0.6:8765": {"token": "t-second"}},
    }))
    ep = resolve()
    assert ep.urls == ("http://10.0.0.5:8765", "http://10.0.0.6:8765")
    assert ep.token == "t-second"  # recorded for one of them: the same Titan
    path.write_text(json.dumps({"default": "http://10.0.0.5:8765,http://10.0.0.6:8765"}))
    assert len(resolve().urls) == 2
    path.write_text(json.dumps({"default": {"url": "http://x:1"}}))
    with pytest.raises(ConfigError, match=r"config\.json.*\"default\""):
        resolve()


def test_endpoint_keeps_its_old_shape() -> None:
    ep = Endpoint(url="http://a:1", host="a", port=1)
    assert ep.urls == ("http://a:1",) and ep.api_url == "http://a:1/api/v1"
    both = Endpoint(url="http://b:2", host="b", port=2, urls=("http://a:1",))
    assert both.urls == ("http://b:2", "http://a:1")
    moved = resolve(urls="http://a:1,http://b:2", token="t").at("http://b:2")
    assert (moved.url, moved.host, moved.port, moved.token) == ("http://b:2", "b", 2, "t")
    assert moved.urls == ("http://a:1", "http://b:2")


def test_titan_client_takes_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_MASTER_URLS", "http://env:1")
    with TitanClient(url=["http://a:8765", "http://b:8765"], token="t") as client:
        assert client.url == "http://a:8765"
        assert client.endpoint.urls == ("http://a:8765", "http://b:8765")
    with TitanClient() as client:
        assert client.endpoint.source == "TITAN_MASTER_URLS"


def test_a_stopped_master_gives_the_default_back(isolated: Path) -> None:
    # The default stayed on the last `titan up` started, stopped or not: a client run from
    # anywhere found a dead master before the running one, and tokens piled up.
    record_master("http://127.0.0.1:9090", "t-a", isolated / "a")
    record_master("http://127.0.0.1:9091", "t-b", isolated / "b")
    assert resolve().url == "http://127.0.0.1:9091"
    forget_master("http://127.0.0.1:9091")
    assert resolve().url == "http://127.0.0.1:9090" and resolve().token == "t-a"
    config = json.loads(config_path().read_text())
    assert list(config["masters"]) == ["http://127.0.0.1:9090"]  # b's token is gone
    forget_master("http://127.0.0.1:9091")  # twice: nothing to do
    # The one before stopped first: no default is left rather than a dead one.
    record_master("http://127.0.0.1:9092", "t-c", isolated / "c")
    forget_master("http://127.0.0.1:9090")
    assert resolve().url == "http://127.0.0.1:9092"
    forget_master("http://127.0.0.1:9092")
    assert "default" not in json.loads(config_path().read_text())


def test_a_stopped_master_puts_back_the_entry_it_found(isolated: Path) -> None:
    # Someone's own entry for the URL (another master there before, fields kept by hand)
    # was deleted with the stopped master's.
    record_master("http://127.0.0.1:9090", "mine", isolated / "a")
    config = json.loads(config_path().read_text())
    config["masters"]["http://127.0.0.1:9090"]["note"] = "kept by me"
    config_path().write_text(json.dumps(config))
    record_master("http://127.0.0.1:9090", "t-up", isolated / "b")
    assert resolve().token == "t-up"
    forget_master("http://127.0.0.1:9090", "t-up")
    entry = json.loads(config_path().read_text())["masters"]["http://127.0.0.1:9090"]
    assert entry == {"token": "mine", "note": "kept by me"} and resolve().token == "mine"
    # A master recorded since at the same URL keeps its entry when an older one stops.
    record_master("http://127.0.0.1:9090", "newer", isolated / "c")
    forget_master("http://127.0.0.1:9090", "t-up")
    assert resolve().token == "newer"


def test_a_host_may_carry_its_port() -> None:
    # `titan status --host 127.0.0.1:9091` read "does not appear to be an IPv4 or IPv6
    # address" (it was bracketed as an IPv6 literal).
    assert resolve(host="127.0.0.1:9091", token="t").url == "http://127.0.0.1:9091"
    assert resolve(host="[::1]:9091", token="t").url == "http://[::1]:9091"
    assert resolve(host="::1", token="t").url == "http://[::1]:9090"
    assert resolve(host="10.0.0.5:9091", port=7, token="t").url == "http://10.0.0.5:7"


def test_titan_host_may_carry_its_port_as_host_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """TITAN_HOST is documented as --host is ("HOST:PORT or URL, as every titan command takes
    it"), but TITAN_HOST=master:9091 read "invalid Titan master URL 'http://[master:9091]:9090'"
    (a docs walkthrough). TITAN_PORT, when set too, wins as --port does; blank counts as unset."""
    monkeypatch.setenv("TITAN_HOST", "10.0.0.5:9091")
    assert resolve(token="t").url == "http://10.0.0.5:9091"
    monkeypatch.setenv("TITAN_HOST", "https://titan.example.com")
    assert resolve(token="t").url == "https://titan.example.com:443"
    monkeypatch.setenv("TITAN_HOST", "[::1]:9091")
    assert resolve(token="t").url == "http://[::1]:9091"
    monkeypatch.setenv("TITAN_PORT", "7")
    ep = resolve(token="t")
    assert (ep.url, ep.source) == ("http://[::1]:7", "TITAN_HOST/TITAN_PORT")
    monkeypatch.setenv("TITAN_HOST", "::1")
    assert resolve(token="t").url == "http://[::1]:7"
    monkeypatch.setenv("TITAN_PORT", "ninety")
    monkeypatch.setenv("TITAN_HOST", "10.0.0.5:9091")
    with pytest.raises(ConfigError, match="invalid port 'ninety' in TITAN_PORT"):
        resolve(token="t")
    monkeypatch.setenv("TITAN_URL", "  ")
    monkeypatch.setenv("TITAN_PORT", " ")
    assert resolve(token="t").url == "http://10.0.0.5:9091"


def test_a_data_dir_named_with_no_master_is_an_error(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # A typo in TITAN_DATA_DIR fell through to the user config's default master.
    monkeypatch.setenv("TITAN_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="holds no master.json: no Titan master has run"):
        resolve()


def test_a_standby_that_led_before_is_not_said_to_have_no_admin_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # After a failover the old leader restarts as a standby: its data dir holds standby.json
    # and the cluster's admin token. The CLI said it "has not led yet" and held "no admin
    # token" (a QA pass on fleets); a standby that never led still gets that message.
    data = tmp_path / "standby"
    data.mkdir()
    (data / "standby.json").write_text(json.dumps(
        {"url": "http://10.0.0.2:9090", "leader": "http://10.0.0.1:9090"}))
    monkeypatch.setenv("TITAN_DATA_DIR", str(data))
    with pytest.raises(ConfigError, match="that has not led yet"):
        resolve()
    (data / "admin.token").write_text("t" * 40)
    with pytest.raises(ConfigError) as said:
        resolve()
    text = str(said.value)
    assert "has not led yet" not in text and "no admin token" not in text, text
    assert "leads no more" in text and "the leader, http://10.0.0.1:9090" in text
    assert str(data / "admin.token") in text


@pytest.mark.parametrize("timeout", [0, -1, "x", None, float("nan"), float("inf"), True])
def test_a_timeout_that_is_no_number_of_seconds_is_a_config_error(timeout: object) -> None:
    with pytest.raises(ConfigError, match="a number above 0"):
        TitanClient(timeout=timeout)  # type: ignore[arg-type]


def test_an_empty_token_given_is_refused_and_an_empty_env_token_is_unset(
        monkeypatch: pytest.MonkeyPatch) -> None:
    write_data_dir(Path(".titan"), "http://127.0.0.1:9600", "t-admin")
    for blank in ("", " \n"):
        with pytest.raises(ConfigError, match="the token given .* is empty"):
            resolve(token=blank)
        monkeypatch.setenv("TITAN_TOKEN", blank)
        assert resolve().token == "t-admin"
    monkeypatch.setenv("TITAN_TOKEN", "t-env")
    assert resolve().token == "t-env"


def test_a_user_config_others_may_read_is_warned_of_once(isolated: Path) -> None:
    """A config.json at 0644 (it holds tokens; the README says 0600) was read silently."""
    import warnings

    from titan import permissions

    path = record_master("http://127.0.0.1:9310", "t-secret", isolated / "data")
    path.chmod(0o640)
    permissions._WARNED.discard(path)
    with pytest.warns(UserWarning, match=r"mode 0640, open to other local users; run "
                                         rf"`chmod 600 {path}`"):
        assert resolve().token == "t-secret"  # still read: a warning, not a refusal
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per process, not at every lookup
        assert token_for("http://127.0.0.1:9310") == "t-secret"
    path.chmod(0o600)
    permissions._WARNED.discard(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve()


def test_a_url_with_credentials_is_refused_without_showing_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # TitanClient(url="http://user:pw@h") dropped the user and password silently (Titan
    # sends a token), so a proxy that wanted them refused every call as if none were given.
    for url in ("http://alice:s3cret@titan.example.com:9090", "alice:s3cret@10.0.0.5:9091",
                "https://s3cret@titan.example.com"):
        with pytest.raises(ConfigError, match="holds credentials") as got:
            resolve(host=url, token="t")
        assert "s3cret" not in str(got.value) and "***@" in str(got.value), got.value
    monkeypatch.setenv("TITAN_HOST", "http://alice:s3cret@master:9091")
    with pytest.raises(ConfigError, match="holds credentials") as got:
        resolve(token="t")
    assert "s3cret" not in str(got.value), got.value
    monkeypatch.delenv("TITAN_HOST")
    with pytest.raises(ConfigError, match="without a query") as got:
        resolve(host="http://titan.example.com:9090/?token=s3cret", token="t")
    assert "s3cret" not in str(got.value), got.value
    # An @ after the authority is no credential.
    with pytest.raises(ConfigError, match="without a path"):
        resolve(host="http://titan.example.com:9090/a@b", token="t")
