"""titan.atomic: all at once or not at all into a plain file; a device or a pipe is written
into, never replaced (as root, `runs export -o /dev/stdout` replaced /dev/stdout)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from titan.atomic import atomic_file


def test_a_plain_file_is_replaced_whole_or_left_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(target) as fh:
        fh.write(b"half")
        raise RuntimeError("cut short")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.json"]
    with atomic_file(target) as fh:
        fh.write(b"new")
    assert target.read_bytes() == b"new"


def test_a_symlink_to_a_device_is_written_into_and_kept(tmp_path: Path) -> None:
    link = tmp_path / "null"
    link.symlink_to("/dev/null")  # a link of our own: a regression replaces it, not /dev/null
    with atomic_file(link) as fh:
        fh.write(b"x" * 1000)
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert os.listdir(tmp_path) == ["null"]


def test_a_named_pipe_gets_the_bytes_and_stays_a_pipe(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    with atomic_file(fifo) as fh:
        fh.write(b"through the pipe")
    reader.join(10)
    assert got == [b"through the pipe"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_symlink_to_a_plain_file_updates_its_target(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_bytes(b"old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    with atomic_file(link) as fh:
        fh.write(b"new")
    assert link.is_symlink() and real.read_bytes() == b"new"
