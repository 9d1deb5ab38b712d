"""Near-duplicate images: the same X-ray stored twice with another encoding, size or file name.

Byte hashes (``pneumo.data.splits.find_duplicates``) miss an image saved again as JPEG or resized. A 16 x 16
difference hash (does brightness rise from each cell to its right neighbour?) survives both. On the Kermany
training folder the stored-twice pairs lie 0-4 bits apart and unrelated X-rays 12 or more, so the default
limit of 8 of 256 bits separates them.

Pairs are found without comparing every image with every other: two hashes at most ``d`` bits apart agree
exactly on at least one of ``d + 1`` bands of bits (pigeonhole), so only images sharing a band are compared.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from PIL import Image

from pneumo.data.disjoint_sets import DisjointSets

HASH_SIDE = 16
MAX_DISTANCE = 8  # bits of HASH_SIDE**2
_ROWS = 1024


def difference_hash(image: np.ndarray, side: int = HASH_SIDE) -> np.ndarray:
    """``side * side`` booleans of a 2-D float image: is each cell darker than its right neighbour?"""
    small = np.asarray(Image.fromarray(np.asarray(image, dtype=np.float32), mode="F")
                       .resize((side + 1, side), Image.BILINEAR))
    return (small[:, 1:] > small[:, :-1]).ravel()


def near_duplicate_groups(hashes: list[np.ndarray | None], max_distance: int = MAX_DISTANCE) -> list[list[int]]:
    """Indices of images whose hashes lie within ``max_distance`` bits, joined transitively into groups
    (each sorted, groups sorted by first index). ``None`` entries (unreadable images) are never grouped."""
    present = [i for i, h in enumerate(hashes) if h is not None]
    if len(present) < 2:
        return []
    bits = np.stack([hashes[i] for i in present]).astype(bool)
    bands = np.array_split(np.arange(bits.shape[1]), max_distance + 1)
    sets = DisjointSets(len(present))
    for band in bands:
        buckets: dict[bytes, list[int]] = defaultdict(list)
        for row, key in enumerate(np.packbits(bits[:, band], axis=1)):
            buckets[key.tobytes()].append(row)
        for members in buckets.values():
            if len(members) < 2:
                continue
            block = bits[members].astype(np.float32)
            for start in range(0, len(members), _ROWS):  # row blocks bound memory for huge buckets
                rows = block[start:start + _ROWS]
                distance = rows @ (1 - block).T + (1 - rows) @ block.T  # Hamming distances, exact in float32
                for a, b in zip(*np.nonzero(distance <= max_distance)):
                    if start + a < b:
                        sets.join(members[start + a], members[b])
    groups: dict[int, list[int]] = defaultdict(list)
    for row in range(len(present)):
        groups[sets.root(row)].append(present[row])
    return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])
