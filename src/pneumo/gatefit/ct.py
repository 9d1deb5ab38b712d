"""CT slices as negatives of the gate: pydicom's CT test files and the thorax phantom, in lung and soft-tissue
windows (:mod:`pneumo.gatefit.phantom`), since these got readings from the two-boundary gate (issue 23)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from pneumo.gatefit import phantom


def pydicom_ct_files() -> list[Path]:
    """pydicom's bundled test files whose modality is CT and whose pixels this installation decodes. The
    folder is read directly: ``pydicom.data.get_testdata_files`` would try to download pydicom-data's files."""
    import pydicom
    import pydicom.data

    found: list[Path] = []
    for name in sorted((Path(pydicom.data.__file__).parent / "test_files").glob("*.dcm")):
        with warnings.catch_warnings():  # pydicom's test files are deliberately odd; their warnings are noise
            warnings.simplefilter("ignore")
            try:
                dataset = pydicom.dcmread(name, stop_before_pixels=True)
                if dataset.get("Modality") != "CT":
                    continue
                pydicom.dcmread(name).pixel_array
            except Exception:  # no pixel data, or a compressed syntax without its plugin: not usable here
                continue
        found.append(Path(name))
    return found


def hounsfield(path: Path) -> np.ndarray:
    """A CT file's pixels in HU (stored value x RescaleSlope + RescaleIntercept), first frame."""
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = pydicom.dcmread(path)
        pixels = np.asarray(dataset.pixel_array, dtype=np.float32)
    if pixels.ndim == 3:
        pixels = pixels[0]
    if pixels.ndim != 2:
        raise ValueError(f"{path}: CT pixels of shape {pixels.shape}; one grayscale frame expected")
    slope, intercept = float(dataset.get("RescaleSlope", 1.0)), float(dataset.get("RescaleIntercept", 0.0))
    return pixels * slope + intercept


def reframed(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy as another export would show it: a crop of 70-100% of each side, resized to 192-512 px, with
    a little blur or noise now and then."""
    h, w = image.shape
    keep_h, keep_w = int(h * rng.uniform(0.7, 1.0)), int(w * rng.uniform(0.7, 1.0))
    top, left = int(rng.integers(0, h - keep_h + 1)), int(rng.integers(0, w - keep_w + 1))
    side = int(rng.integers(192, 513))
    picture = Image.fromarray(image[top:top + keep_h, left:left + keep_w]).resize((side, side), Image.BILINEAR)
    if rng.random() < 0.3:
        picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    out = np.asarray(picture, dtype=np.float32)
    if rng.random() < 0.3:
        out = out + rng.normal(0.0, rng.uniform(2.0, 8.0), out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def pydicom_ct_renders(path: Path, rng: np.random.Generator, copies: int) -> list[tuple[str, np.ndarray]]:
    """``(name, uint8 image)``: the file in each window, as it is and as ``copies`` reframed copies."""
    hu = hounsfield(path)
    out = []
    for window in phantom.WINDOWS:
        shown = phantom.render(hu, window)
        out.append((f"{path.name}-{window.name}", shown))
        out += [(f"{path.name}-{window.name}-copy{k}", reframed(shown, rng)) for k in range(copies)]
    return out


def phantom_render(plane: str, rng: np.random.Generator, index: int) -> np.ndarray:
    """Slice ``index`` of the phantom in ``plane`` (axial or coronal), lung and soft-tissue windows in turn."""
    makers = {"axial": phantom.axial_slice, "coronal": phantom.coronal_slice}
    if plane not in makers:
        raise ValueError(f"unknown plane {plane!r}; choose one of {sorted(makers)}")
    return phantom.render(makers[plane](rng), phantom.WINDOWS[index % len(phantom.WINDOWS)])
