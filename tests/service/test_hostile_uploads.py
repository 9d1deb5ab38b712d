"""Issue 28's bombs posted to /api/v1/predict: each is a 413 whose message names the limit it broke, no history
row is written, and the service answers normally afterwards."""

from __future__ import annotations

import importlib.util
import re

import pytest

from pneumo_testsupport import bombs

from .test_api import assert_json_error, post_image

HAVE_JPEGLS = importlib.util.find_spec("jpeg_ls") is not None  # pyjpegls, with the dicom extra
BOMBS = {
    "jpegls-128-frames": (bombs.jpegls_multiframe_bomb, "over the 268435456-byte decoding budget"),
    "rle-128-frames": (bombs.rle_multiframe_bomb, "over the 268435456-byte decoding budget"),
    "deflated": (bombs.deflated_bomb, r"deflated DICOM inflates to more than \d+ bytes, over the \d+-byte limit"),
    "rle-segment": (lambda: bombs.rle_segment_bomb(expanded=8 * 1024 * 1024), "past the 256-byte limit"),
    "jpegls-lying-frame": (bombs.jpegls_lying_frame, "the limit its pixels are budgeted for"),
    "two-frames": (bombs.multiframe_dicom, "over the limit of 1 frame per image"),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_bombs_are_413_naming_the_limit(client, xray_jpeg, name):
    if name.startswith("jpegls") and not HAVE_JPEGLS:
        pytest.skip("pyjpegls is not installed")
    build, limit = BOMBS[name]
    message = assert_json_error(post_image(client, build(), name="x.dcm", content_type="application/dicom"), 413)
    assert message.startswith("image refused: ")
    assert re.search(limit, message), message
    assert client.get("/api/v1/history").json()["total"] == 0
    assert post_image(client, xray_jpeg).status_code == 200
