"""Near duplicates: the same X-ray re-encoded or resized is found; different X-rays are not grouped."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumo.cli import main
from pneumo.data import near_duplicates
from pneumo.data.decode import decode_image
from pneumo.data.near_duplicates import MAX_DISTANCE, difference_hash, near_duplicate_groups


def _reencoded(path: Path, scale: float, quality: int) -> Image.Image:
    image = Image.open(path).convert("L")
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


def _distance(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.count_nonzero(a != b))


def test_hash_survives_reencoding_and_separates_different_xrays(real_xrays: list[Path]) -> None:
    hashes = [difference_hash(decode_image(p)) for p in real_xrays]
    assert all(h.shape == (256,) and h.dtype == bool for h in hashes)
    for path, original in zip(real_xrays, hashes):
        copy = np.asarray(_reencoded(path, 0.8, 60), dtype=np.float32) / 255.0
        assert _distance(difference_hash(copy), original) <= MAX_DISTANCE
    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            assert _distance(hashes[i], hashes[j]) > 2 * MAX_DISTANCE


@pytest.mark.parametrize("rows", [1024, 3])  # 3: every bucket is compared in several row blocks
def test_groups_match_brute_force(monkeypatch: pytest.MonkeyPatch, rows: int) -> None:
    monkeypatch.setattr(near_duplicates, "_ROWS", rows)
    rng = np.random.default_rng(0)
    base = rng.random((12, 256)) < 0.5
    hashes: list[np.ndarray | None] = [row for row in base]
    for source, flips in ((0, 3), (0, 8), (5, 1), (12, 2)):  # (12: a near copy of a near copy) chains join
        copy = hashes[source].copy()
        copy[rng.choice(256, flips, replace=False)] ^= True
        hashes.append(copy)
    far = hashes[7].copy()
    far[rng.choice(256, MAX_DISTANCE + 1, replace=False)] ^= True
    hashes += [far, None]
    groups = near_duplicate_groups(hashes)
    assert groups == [[0, 12, 13, 15], [5, 14]]
    # brute force agrees on which pairs are within the limit
    present = [i for i, h in enumerate(hashes) if h is not None]
    close = {(i, j) for i in present for j in present
             if i < j and _distance(hashes[i], hashes[j]) <= MAX_DISTANCE}
    member = {i: k for k, g in enumerate(groups) for i in g}
    assert all(member.get(i) is not None and member.get(i) == member.get(j) for i, j in close)


def test_summary_reports_near_duplicates_across_splits(tmp_path: Path, real_xrays: list[Path],
                                                       capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "data"
    for split in ("train", "test"):
        for label in ("NORMAL", "PNEUMONIA"):
            (root / split / label).mkdir(parents=True)
    normal = [p for p in real_xrays if "IM-" in p.name]
    for i, path in enumerate(real_xrays):
        label = "NORMAL" if path in normal else "PNEUMONIA"
        (root / "train" / label / path.name).write_bytes(path.read_bytes())
    # the first normal X-ray again in test, resized and re-encoded under another patient's name
    _reencoded(normal[0], 0.9, 70).save(root / "test" / "NORMAL" / "IM-9999-0001.jpeg")
    assert main(["data", "summary", str(root)]) == 0
    out = capsys.readouterr().out
    assert "exact-duplicate groups: 0" in out and "): 1 (2 files)" in out
    assert "1 near-duplicate groups" in out and "IM-9999-0001.jpeg" in out
