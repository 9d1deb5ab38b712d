"""The spool's files: private (0600 files, 0700 folders), durable (the folder synced after each rename), and
held to a quota that refuses new instances only."""

from __future__ import annotations

import os
import stat

import pytest

from pneumo.dicom import spool as spool_module
from pneumo.dicom.spool import Spool, SpoolFullError


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_are_0600_and_folders_0700_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        root = tmp_path / "spool"
        root.mkdir(mode=0o755)
        spool = Spool(root)
        path = spool.put(spool.incoming, b"DICM", "in")
        moved = spool.fail(spool.put(spool.outgoing, b"SR", "sr"))
    finally:
        os.umask(old)
    assert _mode(path) == 0o600 and _mode(moved) == 0o600
    assert {_mode(folder) for folder in (root, spool.incoming, spool.outgoing, spool.failed)} == {0o700}


def test_the_folder_is_synced_after_each_rename_and_deletion(tmp_path, monkeypatch):
    spool = Spool(tmp_path / "spool")
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        events.append(("fsync-dir" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "fsync-file",
                       os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    def replace(source, target):
        events.append(("rename", str(target)))
        real_replace(source, target)

    monkeypatch.setattr(spool_module.os, "fsync", fsync)
    monkeypatch.setattr(spool_module.os, "replace", replace)
    path = spool.put(spool.incoming, [b"a", memoryview(b"b")], "in")
    assert [kind for kind, _ in events] == ["fsync-file", "rename", "fsync-dir"]
    assert events[2][1] == str(spool.incoming)
    events.clear()
    spool.remove(path)
    assert events == [("fsync-dir", str(spool.incoming))]
    events.clear()
    spool.fail(spool.put(spool.outgoing, b"x", "sr"))
    renamed = [i for i, (kind, where) in enumerate(events) if kind == "rename" and where.startswith(str(spool.failed))]
    assert renamed and ("fsync-dir", str(spool.failed)) in events[renamed[0]:]


def test_the_quota_refuses_new_instances_but_never_reports(tmp_path):
    spool = Spool(tmp_path / "spool", quota_bytes=1000)
    first = spool.put(spool.incoming, bytes(600), "in", quota=True)
    with pytest.raises(SpoolFullError, match="1000-byte quota"):
        spool.put(spool.incoming, bytes(600), "in", quota=True)
    assert spool.pending(spool.incoming) == [first] and list(spool.incoming.iterdir()) == [first]  # no temp file
    spool.put(spool.outgoing, bytes(600), "sr")  # a report always goes through: it lets the spool drain
    assert spool.used_bytes == 1200
    spool.remove(first)
    assert spool.used_bytes == 600
    (next(iter(spool.pending(spool.outgoing)))).unlink()  # removed by hand: the next refusal counts again
    assert spool.put(spool.incoming, bytes(900), "in", quota=True).exists()
    assert Spool(tmp_path / "spool").used_bytes == 900  # counted from the disk at start
