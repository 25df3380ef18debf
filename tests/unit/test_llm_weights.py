"""The local model's weights, with tiny real distributions standing in for the 491 MB parts.

Each fake part is an installed distribution as pip leaves one: a ``<name>-<version>.dist-info``
folder (METADATA, RECORD) and the data files RECORD lists, in a folder put on ``sys.path``,
so :mod:`importlib.metadata` finds them exactly as it finds the real parts.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest

from titan.errors import ModelIntegrityError, ModelUnavailable
from titan.llm import install, weights

PREFIX = "titan-fake-weights-part"
VERSION = "1.2.0"


def install_part(site: Path, index: int, files: dict[str, bytes],
                 version: str = VERSION) -> None:
    """Install distribution ``<PREFIX><index>`` holding ``files`` (relative paths) into site."""
    name = f"{PREFIX}{index}"
    dist_info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    record = []
    for rel, data in files.items():
        target = site / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        record.append(f"{rel},sha256={hashlib.sha256(data).hexdigest()},{len(data)}")
    record += [f"{dist_info.name}/METADATA,,", f"{dist_info.name}/RECORD,,"]
    (dist_info / "RECORD").write_text("\n".join(record) + "\n")


def fake_model(data: bytes, parts: int = 2, *, sha256: str | None = None,
               size: int | None = -1) -> weights.PackagedModel:
    return weights.PackagedModel(
        name="fake", title="Fake Model Q0", dist_prefix=PREFIX, parts=parts, version=VERSION,
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        size=len(data) if size == -1 else size, filename="fake.gguf")


# The model's bytes, split over two parts; part 1 holds three files named to sort naturally.
CHUNKS = {1: {"fakew1/data/chunk1.bin": b"GGUF-one|", "fakew1/data/chunk2.bin": b"two|",
              "fakew1/data/chunk10.bin": b"ten|", "fakew1/__init__.py": b""},
          2: {"fakew2/last.bin": b"last-part"}}
WHOLE = b"GGUF-one|two|ten|last-part"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "site-packages"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    monkeypatch.setenv("TITAN_CACHE_DIR", str(tmp_path / "cache"))
    return path


@pytest.fixture
def installed(site: Path) -> Path:
    for index, files in CHUNKS.items():
        install_part(site, index, files)
    return site


def target_of(model: weights.PackagedModel) -> Path:
    return weights.cache_dir() / "models" / model.filename


def test_requirements_are_pinned_per_part() -> None:
    assert fake_model(WHOLE, parts=3).requirements == [
        f"{PREFIX}1=={VERSION}", f"{PREFIX}2=={VERSION}", f"{PREFIX}3=={VERSION}"]


def test_cache_dir_follows_titan_cache_dir_then_xdg(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.cache_dir() == tmp_path / "xdg" / "titan"
    monkeypatch.setenv("TITAN_CACHE_DIR", str(tmp_path / "explicit"))
    assert weights.cache_dir() == tmp_path / "explicit"


def test_lookup_of_an_unknown_model_names_the_known_ones() -> None:
    assert weights.lookup(weights.DEFAULT_LOCAL_MODEL).parts == 6
    with pytest.raises(ModelUnavailable, match="unknown local model 'nope'.*qwen2.5-coder-0.5b"):
        weights.lookup("nope")


def test_part_files_come_from_metadata_in_natural_order(installed: Path) -> None:
    files = weights.part_files(fake_model(WHOLE))
    assert files == [installed / "fakew1/data/chunk1.bin", installed / "fakew1/data/chunk2.bin",
                     installed / "fakew1/data/chunk10.bin", installed / "fakew2/last.bin"]
    assert b"".join(f.read_bytes() for f in files) == WHOLE


def test_a_missing_part_names_the_pip_requirement(site: Path) -> None:
    install_part(site, 1, CHUNKS[1])
    with pytest.raises(ModelUnavailable) as err:
        weights.part_files(fake_model(WHOLE, parts=3))
    message = str(err.value)
    assert f"missing {PREFIX}2=={VERSION}, {PREFIX}3=={VERSION}" in message
    assert f"{PREFIX}1==" not in message
    assert "titan llm install --model fake" in message


def test_a_part_at_another_version_is_refused(site: Path) -> None:
    install_part(site, 1, CHUNKS[1])
    install_part(site, 2, CHUNKS[2], version="0.9.9")
    with pytest.raises(ModelUnavailable, match=rf"{PREFIX}2=={VERSION} \(installed: 0\.9\.9\)"):
        weights.part_files(fake_model(WHOLE))


def test_a_part_without_data_files_is_refused(site: Path) -> None:
    install_part(site, 1, CHUNKS[1])
    install_part(site, 2, {"fakew2/readme.txt": b"no weights here"})
    with pytest.raises(ModelUnavailable, match="holds no .bin file"):
        weights.part_files(fake_model(WHOLE))


def test_join_concatenates_verifies_and_notes(installed: Path) -> None:
    model = fake_model(WHOLE)
    seen: list[tuple[int, int]] = []
    path = weights.join(model, lambda done, total: seen.append((done, total)))
    assert path == target_of(model)
    assert path.read_bytes() == WHOLE
    assert seen[-1] == (len(WHOLE), len(WHOLE))
    note = json.loads(path.with_name("fake.gguf.verified").read_text())
    st = path.stat()
    assert note == {"sha256": model.sha256, "size": len(WHOLE), "mtime_ns": st.st_mtime_ns}
    # A second join finds the verified file and leaves it alone.
    assert weights.join(model) == path
    assert path.stat().st_mtime_ns == st.st_mtime_ns


def test_join_refuses_a_wrong_sha256_and_leaves_nothing_under_the_name(installed: Path) -> None:
    model = fake_model(WHOLE, sha256="0" * 64)
    with pytest.raises(ModelIntegrityError, match="expected 0000") as err:
        weights.join(model)
    assert hashlib.sha256(WHOLE).hexdigest() in str(err.value)
    models = target_of(model).parent
    assert not target_of(model).exists()
    assert sorted(p.name for p in models.iterdir()) == ["fake.gguf.lock"]  # no temp file


def test_join_refuses_parts_of_the_wrong_total_size(installed: Path) -> None:
    model = fake_model(WHOLE, size=len(WHOLE) + 1)
    with pytest.raises(ModelIntegrityError, match=r"add up to 26 bytes, not 27"):
        weights.join(model)
    assert not target_of(model).exists()


def test_join_from_two_threads_at_once_gives_one_good_file(installed: Path) -> None:
    model = fake_model(WHOLE)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(weights.join(model)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [target_of(model)] * 4
    assert target_of(model).read_bytes() == WHOLE
    assert not [p for p in target_of(model).parent.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture
def catalogued(installed: Path, monkeypatch: pytest.MonkeyPatch) -> weights.PackagedModel:
    model = fake_model(WHOLE)
    monkeypatch.setitem(weights.CATALOG, model.name, model)
    return model


def uninstall_parts(site: Path) -> None:
    for dist_info in site.glob("*.dist-info"):
        for f in dist_info.iterdir():
            f.unlink()
        dist_info.rmdir()


def test_ensure_joins_on_first_use(catalogued: weights.PackagedModel) -> None:
    path = weights.ensure("fake")
    assert path.read_bytes() == WHOLE
    assert path.with_name("fake.gguf.verified").exists()


def test_ensure_trusts_the_note_while_the_stat_matches(catalogued: weights.PackagedModel,
                                                       installed: Path) -> None:
    path = weights.ensure("fake")
    uninstall_parts(installed)  # joining again would now fail: the note alone must suffice
    assert weights.ensure("fake") == path


def test_ensure_rehashes_a_touched_file_and_renews_the_note(
        catalogued: weights.PackagedModel, installed: Path) -> None:
    path = weights.ensure("fake")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    uninstall_parts(installed)  # so a pass can only come from hashing the file as it is
    assert weights.ensure("fake") == path
    note = json.loads(path.with_name("fake.gguf.verified").read_text())
    assert note["mtime_ns"] == st.st_mtime_ns + 5_000_000_000


def test_ensure_replaces_a_changed_file_from_the_parts(catalogued: weights.PackagedModel) -> None:
    path = weights.ensure("fake")
    st = path.stat()
    path.write_bytes(WHOLE.replace(b"two", b"TWO"))  # same size, wrong bytes
    # A new mtime even where the clock's tick is coarser than the two writes.
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert weights.ensure("fake") == path
    assert path.read_bytes() == WHOLE


def test_ensure_discards_a_changed_file_it_cannot_rebuild(
        catalogued: weights.PackagedModel, installed: Path) -> None:
    path = weights.ensure("fake")
    path.write_bytes(WHOLE + b"appended")
    uninstall_parts(installed)
    with pytest.raises(ModelUnavailable, match="is not installed"):
        weights.ensure("fake")
    assert not path.exists()  # a file with the wrong bytes is never left to be loaded


def test_ensure_hashes_a_file_whose_note_is_lost(catalogued: weights.PackagedModel) -> None:
    path = weights.ensure("fake")
    path.with_name("fake.gguf.verified").unlink()
    assert weights.ensure("fake") == path
    assert json.loads(path.with_name("fake.gguf.verified").read_text())["sha256"] == (
        catalogued.sha256)


def test_check_gguf(tmp_path: Path) -> None:
    good = tmp_path / "m.gguf"
    good.write_bytes(b"GGUF\x03\x00\x00\x00rest")
    assert weights.check_gguf(good) == good
    bad = tmp_path / "m.bin"
    bad.write_bytes(b"PK\x03\x04 a zip, not a model")
    with pytest.raises(ModelUnavailable, match=r"m\.bin is not a GGUF model file"):
        weights.check_gguf(bad)
    with pytest.raises(ModelUnavailable, match="No such file or directory"):
        weights.check_gguf(tmp_path / "absent.gguf")


CPU_FLAGS = ("flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr sse sse2 ssse3 fma "
             "cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand avx2 bmi1 bmi2")


def on(args: list[str]) -> set[str]:
    return {a.removeprefix("-D").removesuffix("=ON") for a in args if a.endswith("=ON")}


def test_cmake_args_without_avx512_are_the_portable_set() -> None:
    args = install.cmake_args(CPU_FLAGS + "\n")
    assert args == install.PORTABLE_FLAGS
    assert "-DGGML_NATIVE=OFF" in args
    assert not any("AVX512" in a for a in args)


def test_cmake_args_add_avx512_only_with_avx512f() -> None:
    # Extension flags without the foundation are ignored.
    assert install.cmake_args(CPU_FLAGS + " avx512_vnni avx512_bf16") == install.PORTABLE_FLAGS
    base = install.cmake_args(CPU_FLAGS + " avx512f avx512dq avx512cd avx512bw avx512vl")
    assert on(base) - on(install.PORTABLE_FLAGS) == {"GGML_AVX512"}
    full = install.cmake_args(CPU_FLAGS + " avx512f avx512_vbmi avx512_vnni avx512_bf16")
    assert on(full) - on(install.PORTABLE_FLAGS) == {
        "GGML_AVX512", "GGML_AVX512_VBMI", "GGML_AVX512_VNNI", "GGML_AVX512_BF16"}
    assert install.build_key(base) != install.build_key(full)


def test_cmake_args_never_enable_amx_or_native() -> None:
    sapphire_rapids = (CPU_FLAGS + " avx512f avx512_vnni avx512_bf16 avx512_fp16 amx_bf16 "
                       "amx_tile amx_int8 avx_vnni")
    args = install.cmake_args(sapphire_rapids)
    enabled = on(args)
    assert not any("AMX" in flag for flag in enabled)
    assert "GGML_NATIVE" not in enabled
    for off in ("-DGGML_NATIVE=OFF", "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF",
                "-DGGML_AMX_BF16=OFF"):
        assert off in args


def test_cmake_args_read_this_machines_cpuinfo_by_default() -> None:
    args = install.cmake_args()
    assert args[:len(install.PORTABLE_FLAGS)] == install.PORTABLE_FLAGS
    has_avx512f = "avx512f" in Path("/proc/cpuinfo").read_text().split()
    assert ("-DGGML_AVX512=ON" in args) == has_avx512f
