"""How the node reads its associations' sockets (pneumo.dicom.tcp): whole PDUs in one buffer, nothing lost."""

from __future__ import annotations

import os
import socket
import threading
import tracemalloc

import numpy as np
import pytest

from .conftest import dx_instance, encode
from .scu import store

from pneumo.dicom.tcp import receive_exactly


def _write_in_pieces(sock: socket.socket, data: bytes, piece: int, close: bool) -> threading.Thread:
    def write() -> None:
        for start in range(0, len(data), piece):
            sock.sendall(data[start:start + piece])
        if close:
            sock.close()

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_a_pdu_written_in_small_pieces_is_read_whole_and_the_next_bytes_stay_on_the_socket():
    reader, writer = socket.socketpair()
    data = os.urandom(3_000_000)
    with reader, writer:
        thread = _write_in_pieces(writer, data + b"NEXT", 1000, close=False)
        assert receive_exactly(reader, len(data)) == data
        assert receive_exactly(reader, 4) == b"NEXT"
        thread.join(10)


def test_a_pdu_longer_than_the_first_buffer_grows_it_as_its_bytes_arrive():
    reader, writer = socket.socketpair()
    data = os.urandom(1_000_000)
    with reader, writer:
        thread = _write_in_pieces(writer, data, 70_000, close=False)
        assert receive_exactly(reader, len(data), first_allocation=1000) == data
        thread.join(10)


def test_a_length_field_claiming_gigabytes_reserves_only_what_arrives():
    reader, writer = socket.socketpair()
    with reader:
        _write_in_pieces(writer, b"y" * 5000, 5000, close=True).join(10)
        tracemalloc.start()
        try:
            received = receive_exactly(reader, 4_000_000_000, first_allocation=4096)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert received == b"y" * 5000
    assert peak < 1_000_000


def test_a_peer_that_closes_midway_leaves_the_bytes_it_sent():
    reader, writer = socket.socketpair()
    with reader:
        _write_in_pieces(writer, b"x" * 10_000, 4096, close=True).join(10)
        received = receive_exactly(reader, 50_000)
    assert received == b"x" * 10_000  # short: pynetdicom then reports the PDU as cut off


def test_a_detector_sized_instance_sent_as_one_pdu_is_read_as_the_predictor_reads_it(make_node, xray_files):
    client, node = make_node()
    ds = dx_instance(xray_files[0], size=None)
    scale = -(-2048 // max(ds.Rows, ds.Columns))
    pixels = np.repeat(np.repeat(ds.pixel_array, scale, axis=0), scale, axis=1)  # a detector's size, 16 bits
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.tobytes()
    assert len(ds.PixelData) > 4_000_000  # one PDU of megabytes: the node sets no PDU limit
    assert store(node.port, [ds]) == [0x0000]
    assert node.wait_idle(120)
    (row,) = client.get("/api/v1/history?limit=5").json()["items"]
    expected = node.predictor.predict(encode(ds))
    assert row["label"] == expected.label
    assert row["probability"] == pytest.approx(expected.probability, abs=1e-6)
