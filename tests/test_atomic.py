"""pneumo.atomic: a write that fails midway leaves the old file as it was, permissions are the ones asked for
whatever the umask, and no temporary file is left behind either way."""

from __future__ import annotations

import os
import stat

import pytest

from pneumo import atomic
from pneumo.atomic import replacing, write_bytes, write_text


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "config.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with replacing(target) as temporary, open(temporary, "w") as handle:
            handle.write("new, half of it")
            handle.flush()
            raise RuntimeError("disk on fire")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_a_failing_chunk_source_leaves_no_file_where_there_was_none(tmp_path):
    def chunks():
        yield b"first"
        raise OSError("the sender hung up")

    with pytest.raises(OSError, match="hung up"):
        write_bytes(tmp_path / "instance.dcm", chunks())
    assert list(tmp_path.iterdir()) == []


def test_the_new_content_replaces_the_old_and_no_temporary_is_left(tmp_path):
    target = write_text(tmp_path / "bundle.json", "old")
    write_bytes(target, [b"ne", memoryview(b"w")])
    assert target.read_bytes() == b"new"
    assert list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("mode", [0o600, 0o644])
def test_permissions_are_the_ones_asked_for_whatever_the_umask(tmp_path, mode):
    old = os.umask(0o077 if mode == 0o644 else 0o000)  # a umask that would give the other mode
    try:
        path = write_text(tmp_path / "file", "x", mode=mode)
        with replacing(tmp_path / "other", mode=mode) as temporary:
            temporary.write_bytes(b"y")
    finally:
        os.umask(old)
    assert _mode(path) == mode and _mode(tmp_path / "other") == mode


def test_the_default_is_readable_by_all_for_shared_files(tmp_path):
    assert _mode(write_text(tmp_path / "config.json", "{}")) == 0o644


def test_the_file_is_synced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        events.append("fsync-dir" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "fsync-file")
        real_fsync(descriptor)

    def replace(source, target):
        events.append("rename")
        real_replace(source, target)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    write_text(tmp_path / "config.json", "{}")
    assert events == ["fsync-file", "rename", "fsync-dir"]


def test_without_overwrite_an_existing_file_is_kept(tmp_path):
    target = write_text(tmp_path / "pixels.u8", "theirs")
    with pytest.raises(FileExistsError):
        with replacing(target, overwrite=False) as temporary:
            temporary.write_text("mine")
    assert target.read_text() == "theirs"
    assert list(tmp_path.iterdir()) == [target]
    with replacing(tmp_path / "new.u8", overwrite=False) as temporary:
        temporary.write_text("mine")
    assert (tmp_path / "new.u8").read_text() == "mine"


def test_a_folder_and_its_files_are_synced(tmp_path, monkeypatch):
    (tmp_path / "staging").mkdir()
    write_text(tmp_path / "staging" / "model.safetensors", "w")
    write_text(tmp_path / "staging" / "bundle.json", "{}")
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(atomic.os, "fsync",
                        lambda d: (synced.append(os.readlink(f"/proc/self/fd/{d}")), real_fsync(d)))
    atomic.sync_directory(tmp_path / "staging", contents=True)
    assert sorted(os.path.basename(p) for p in synced[:2]) == ["bundle.json", "model.safetensors"]
    assert synced[2] == str(tmp_path / "staging")


def test_a_bundle_s_files_are_synced_before_it_is_swapped_in(tmp_path, monkeypatch):
    from conftest import make_tiny_bundle

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}"))))
        real_fsync(descriptor)

    def replace(source, target):
        events.append(("rename", os.path.basename(target)))
        real_replace(source, target)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    bundle = make_tiny_bundle(tmp_path)
    swap = events.index(("rename", "bundle"))  # the staging folder renamed to the bundle's name
    synced_before = {name for kind, name in events[:swap] if kind == "fsync"}
    assert {"model.safetensors", "bundle.json"} <= synced_before
    assert events[swap + 1:] == [("fsync", tmp_path.name)]  # then the folder holding the bundle
    assert (bundle / "model.safetensors").is_file()
