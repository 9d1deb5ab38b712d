"""Decoding ahead and lanes (pneumo.inference.streaming): input order kept, batches of the size asked for."""

from __future__ import annotations

import threading
import time

import pytest

from pneumo.inference.streaming import LANE_BATCH, decoded_ahead, lane_batch_size, run_in_lanes


def test_decoded_ahead_keeps_order_and_batch_size():
    def slow_square(x: int) -> int:
        time.sleep(0.001 * (x % 3))  # finish out of order
        return x * x

    chunks = list(decoded_ahead(range(11), slow_square, batch_size=4, workers=3))
    assert [len(c) for c in chunks] == [4, 4, 3]
    assert sum(chunks, []) == [x * x for x in range(11)]
    with pytest.raises(ValueError, match="batch_size"):
        list(decoded_ahead(range(3), slow_square, batch_size=0, workers=1))


def test_run_in_lanes_keeps_order_and_runs_side_by_side():
    seen: set[str] = set()

    def run(chunk: list[int], in_lane: bool) -> list[tuple[int, bool]]:
        seen.add(threading.current_thread().name)
        time.sleep(0.001 * (3 - chunk[0] % 3))
        return [(x, in_lane) for x in chunk]

    chunks = [[i, i + 1] for i in range(0, 20, 2)]
    out = run_in_lanes(chunks, run, lanes=3)
    assert [x for x, _ in out] == list(range(20)) and all(lane for _, lane in out)
    assert all(name.startswith("pneumo-lane") for name in seen)
    assert [lane for _, lane in run_in_lanes(chunks, run, lanes=1)] == [False] * 20
    assert (lane_batch_size(32, 4), lane_batch_size(32, 1), lane_batch_size(4, 4)) == (LANE_BATCH, 32, 4)
