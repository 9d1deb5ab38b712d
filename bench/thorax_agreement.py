"""The NumPy thorax crop against the same steps done by OpenCV, film by film: how many boxes differ.

pneumo.data.thorax is NumPy so that a bundle trained with ``preprocess.thorax_crop`` predicts on the
torch-free install, which has no OpenCV. This swaps each of its steps (area shrink and blur, Otsu's
threshold, the disk opening, 4-connected components) for the OpenCV call it reproduces and compares the boxes
of every film, plus the time each takes (needs the ``opencv`` extra).

    python bench/thorax_agreement.py ../shared/data/kermany
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from pneumo.data import thorax
from pneumo.data.decode import decode_image


def _work_copy(image: np.ndarray) -> np.ndarray:
    small = cv2.resize(np.clip(image, 0.0, 1.0).astype(np.float32), (thorax.WORK_SIZE, thorax.WORK_SIZE),
                       interpolation=cv2.INTER_AREA)
    return np.round(cv2.GaussianBlur(small, (5, 5), 0) * 255).astype(np.uint8)


def _otsu(values: np.ndarray) -> int:
    return int(cv2.threshold(values.reshape(1, -1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[0])


def _opened(mask: np.ndarray) -> np.ndarray:
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, disk).astype(bool)


def _components(mask: np.ndarray):
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
    return labels, stats, count


@contextmanager
def opencv_steps():
    saved = {name: getattr(thorax, name) for name in ("_work_copy", "otsu_threshold", "_opened", "components")}
    thorax._work_copy, thorax.otsu_threshold, thorax._opened, thorax.components = (_work_copy, _otsu, _opened,
                                                                                  _components)
    try:
        yield
    finally:
        for name, step in saved.items():
            setattr(thorax, name, step)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", help="a folder of films (searched recursively for .jpeg/.jpg/.png)")
    args = p.parse_args()
    paths = sorted(q for q in Path(args.root).rglob("*") if q.suffix.lower() in (".jpeg", ".jpg", ".png"))
    differ = found_differ = 0
    largest = seconds_numpy = seconds_opencv = 0.0
    for path in paths:
        film = decode_image(str(path))
        started = time.perf_counter()
        ours = thorax.find_thorax(film)
        seconds_numpy += time.perf_counter() - started
        with opencv_steps():
            started = time.perf_counter()
            reference = thorax.find_thorax(film)
            seconds_opencv += time.perf_counter() - started
        if (ours is None) != (reference is None):
            found_differ += 1
        elif ours is not None and ours != reference:
            differ += 1
            largest = max(largest, *(abs(getattr(ours, side) - getattr(reference, side))
                                     for side in ("top", "bottom", "left", "right")))
    n = max(1, len(paths))
    print(f"{len(paths)} films: boxes differ on {differ} (largest side difference {largest:.4f} of the film), "
          f"found by one and not the other on {found_differ}; per film NumPy {1000 * seconds_numpy / n:.2f} ms, "
          f"OpenCV {1000 * seconds_opencv / n:.2f} ms")


if __name__ == "__main__":
    main()
