"""The history repository: the same behaviour on SQLite and (when a server is reachable) PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from pneumo.service.history import SqliteHistory, open_history

@pytest.fixture(params=["sqlite", "postgresql"])
def repo(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")  # skips unless a PostgreSQL server is reachable
    history = open_history(url)
    yield history
    history.close()


def add(repo, n: int, heatmap: bytes | None = b"\x89PNG fake"):
    return repo.add(image_sha256=f"{n:064x}", file_type="jpeg", model_version="m-1",
                    result={"label": "NORMAL", "probability": n / 100, "threshold": 0.5}, heatmap_png=heatmap)


def test_add_get_roundtrip(repo):
    entry = add(repo, 7)
    got = repo.get(entry.id)
    assert got == entry
    assert got.heatmap_png == b"\x89PNG fake"
    assert got.result["probability"] == pytest.approx(0.07)
    assert got.created.endswith("Z")
    assert repo.get(entry.id + 1000) is None


def test_recent_is_newest_first_and_paginates(repo):
    ids = [add(repo, n, heatmap=None if n == 2 else b"png").id for n in range(5)]
    assert repo.count() == 5
    assert [e.id for e in repo.recent(limit=10, offset=0)] == ids[::-1]
    assert [e.id for e in repo.recent(limit=2, offset=2)] == ids[::-1][2:4]
    listed = {e.id: e for e in repo.recent(limit=10, offset=0)}
    assert listed[ids[2]].has_heatmap is False and listed[ids[3]].has_heatmap is True
    assert all(e.heatmap_png is None for e in listed.values())  # listings never carry the images


def test_concurrent_writers_lose_no_rows(repo):
    def writer(start: int) -> None:
        for n in range(start, start + 25):
            add(repo, n)

    threads = [threading.Thread(target=writer, args=(k * 100,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert repo.count() == 100
    assert len({e.id for e in repo.recent(limit=200, offset=0)}) == 100


def test_sqlite_file_is_in_wal_mode_and_shared_between_connections(tmp_path):
    path = tmp_path / "sub" / "h.sqlite3"
    first = SqliteHistory(path)
    entry = add(first, 1)
    assert first.journal_mode() == "wal"
    second = open_history(f"sqlite:///{path}")
    assert second.get(entry.id) == entry
    first.close()
    second.close()


@pytest.mark.parametrize("url", ["mysql://u:hunter2@db/x", "sqlite:///", "history.db"])
def test_bad_urls_are_refused_clearly_without_the_password(url):
    with pytest.raises(ValueError) as excinfo:
        open_history(url)
    message = str(excinfo.value)
    assert "hunter2" not in message
    assert "sqlite:///" in message


def test_unreachable_postgres_is_a_clear_error():
    pytest.importorskip("psycopg")
    with pytest.raises(ValueError, match="cannot connect") as excinfo:
        open_history("postgresql://pneumo:hunter2@127.0.0.1:1/none?connect_timeout=2")
    assert "hunter2" not in str(excinfo.value)
