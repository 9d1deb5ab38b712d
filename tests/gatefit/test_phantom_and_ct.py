"""The thorax CT phantom and pydicom's CT files as gate negatives: deterministic, anatomically plausible, and
windowed as a viewer shows them."""

from __future__ import annotations

import numpy as np
import pytest

from pneumo.data.decode import decode_image
from pneumo.gate.checks import cheap_reason
from pneumo.gatefit import ct, phantom

from inference.bundles import png


@pytest.mark.parametrize("make", [phantom.axial_slice, phantom.coronal_slice])
def test_slices_are_deterministic_per_seed(make):
    first, again = make(np.random.default_rng(3), 160), make(np.random.default_rng(3), 160)
    np.testing.assert_array_equal(first, again)
    assert first.dtype == np.float32 and np.isfinite(first).all()
    other = make(np.random.default_rng(4), 160)
    assert not np.array_equal(first, other)  # another seed, another patient


def _share(hu: np.ndarray, low: float, high: float) -> float:
    return float(np.mean((hu >= low) & (hu <= high)))


@pytest.mark.parametrize("seed", range(4))
def test_axial_slice_is_plausible(seed):
    hu = phantom.axial_slice(np.random.default_rng(seed), 256)
    assert (hu[:8, :8] < -1500).all() and (hu[-8:, -8:] < -1500).all()  # outside the round field of view
    assert 0.08 < _share(hu, -1000, -650) < 0.4  # lungs (and the air around the body inside the FOV)
    assert 0.003 < _share(hu, 250, 2000) < 0.08  # bone: spine, ribs, sternum, table shell
    spine = hu[int(256 * 0.6):int(256 * 0.85), 120:136]
    assert (spine > 250).mean() > 0.1  # the vertebra lies behind the heart, in the middle
    left, right = hu[100:140, 40:110], hu[100:140, 146:216]
    assert np.median(left) < -500 and np.median(right) < -500  # a dark lung on each side
    table = hu[int(256 * 0.8):, 60:196]
    assert (table > 100).any()  # the table's dense shell below the body


@pytest.mark.parametrize("seed", range(4))
def test_coronal_slice_is_plausible(seed):
    hu = phantom.coronal_slice(np.random.default_rng(seed), 256)
    h, w = hu.shape
    assert np.median(hu[:, :8]) < -900 and np.median(hu[:, -8:]) < -900  # air beside the body, no padding
    upper_lungs = hu[int(h * 0.3):int(h * 0.45), int(w * 0.22):int(w * 0.36)]
    assert np.median(upper_lungs) < -500
    below_diaphragm = hu[int(h * 0.8):int(h * 0.95), int(w * 0.3):int(w * 0.7)]
    assert np.median(below_diaphragm) > -200  # liver and abdomen below the domes


def test_windows_map_hounsfield_units_as_viewers_do():
    values = np.array([-2000.0, -1350.0, -600.0, 150.0, -160.0, 40.0, 240.0, 3000.0])
    lung = phantom.LUNG_WINDOW.apply(values)
    soft = phantom.SOFT_TISSUE_WINDOW.apply(values)
    assert list(lung[[0, 1, 3, 7]]) == [0, 0, 255, 255] and lung[2] == 128
    assert list(soft[[0, 2, 4, 6]]) == [0, 0, 0, 255] and soft[5] == 128
    hu = phantom.axial_slice(np.random.default_rng(0), 128)
    assert phantom.render(hu, phantom.SOFT_TISSUE_WINDOW).mean() < phantom.render(hu, phantom.LUNG_WINDOW).mean()


@pytest.mark.parametrize("plane", ["axial", "coronal"])
def test_phantom_renders_pass_the_cheap_checks(plane):
    """So that refusing them is the feature gate's job: a grayscale picture with content."""
    image = ct.phantom_render(plane, np.random.default_rng(1), 0)
    pixels = decode_image(png(image))
    assert image.dtype == np.uint8 and cheap_reason(pixels, 0.0) is None


def test_unknown_plane_is_refused():
    with pytest.raises(ValueError, match="plane"):
        ct.phantom_render("sagittal", np.random.default_rng(0), 0)


def test_pydicom_ct_files_are_found_offline_and_rendered():
    files = ct.pydicom_ct_files()
    assert "CT_small.dcm" in {f.name for f in files}
    small = next(f for f in files if f.name == "CT_small.dcm")
    hu = ct.hounsfield(small)
    assert hu.shape == (128, 128) and -1100 < hu.min() < 0 < hu.max()  # air to bone, in HU
    renders = ct.pydicom_ct_renders(small, np.random.default_rng(0), copies=2)
    assert [name for name, _ in renders] == [f"CT_small.dcm-{w}{c}" for w in ("lung", "soft-tissue")
                                             for c in ("", "-copy0", "-copy1")]
    assert all(image.dtype == np.uint8 and image.ndim == 2 for _, image in renders)
