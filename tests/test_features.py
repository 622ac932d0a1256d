"""Derived input features: hand-computed values, reach and tiled-equals-whole behaviour."""
import math

import numpy as np
import pytest

from glacierseg.core import features
from glacierseg.core.contract import ClassInfo, InputSpec, ModelContract
from glacierseg.core.errors import ModelContractError
from glacierseg.core.tiling import reflect_index

NEIGHBOURHOOD = ("GAUSS", "MEDIAN", "SOBEL", "SOBELX", "SOBELY", "SLOPE", "ASPECT", "NORTHNESS", "EASTNESS")


def contract_with(*inputs):
    return ModelContract("glacier", (ClassInfo("glacier", 1, "#66ccff"),), tuple(InputSpec(n) for n in inputs),
                         20.0, 64, "sigmoid", {}, receptive_field_px=8)


def value(name, *arrays, pixel_size=20.0):
    return features.FEATURES[name](*arrays, pixel_size=pixel_size)


def test_indices_hand_computed():
    nir, red, swir1, swir2 = (np.full((2, 2), v, np.float32) for v in (0.5, 0.1, 0.3, 0.2))
    assert value("NDVI", nir, red) == pytest.approx(0.4 / 0.6)
    assert value("NDMI", nir, swir1) == pytest.approx(0.2 / 0.8)
    assert value("NBR", nir, swir2) == pytest.approx(0.3 / 0.7)
    green = np.float32([[0.6, 0.0]])
    swir = np.float32([[0.1, 0.0]])
    np.testing.assert_allclose(value("NDSI", green, swir), [[0.5 / 0.7, 0.0]], rtol=1e-6)  # 0 where a + b = 0


def test_grayscale_is_band_mean():
    out = value("GRAY", np.full((3, 3), 1.0), np.full((3, 3), 2.0), np.full((3, 3), 6.0))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, 3.0)


def test_gaussian_blur_of_an_impulse():
    impulse = np.zeros((21, 21), np.float32)
    impulse[10, 10] = 1.0
    out = value("GAUSS", impulse)
    # 1-D kernel exp(-x²/2), x = -4..4, normalised: centre weight 1 / 2.50662...
    k = np.exp(-np.arange(-4, 5) ** 2 / 2.0)
    k /= k.sum()
    assert out[10, 10] == pytest.approx(k[4] ** 2, rel=1e-5)
    assert out[10, 14] == pytest.approx(k[4] * k[8], rel=1e-4)
    assert out[10, 15] == 0.0  # radius 4 px
    assert out.sum() == pytest.approx(1.0, rel=1e-5)
    assert features.FEATURE_REACH["GAUSS"] == 4


def test_median_removes_an_outlier():
    a = np.ones((5, 5), np.float32)
    a[2, 2] = 100.0
    np.testing.assert_array_equal(value("MEDIAN", a), np.ones((5, 5)))


def test_sobel_of_a_ramp():
    ramp = np.tile(3.0 * np.arange(8, dtype=np.float32), (8, 1))  # +3 per column (eastwards)
    inner = (slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(value("SOBELX", ramp)[inner], 3.0)
    np.testing.assert_allclose(value("SOBELY", ramp)[inner], 0.0)
    np.testing.assert_allclose(value("SOBEL", ramp.T)[inner], 3.0)  # rows ramp: magnitude still 3


def test_slope_and_aspect_of_planes():
    px = 20.0
    cols = np.tile(np.arange(9, dtype=np.float32), (9, 1))
    inner = (slice(1, -1), slice(1, -1))
    east_up = cols * px  # rises 20 m per 20 m eastwards: 45°, faces west
    np.testing.assert_allclose(value("SLOPE", east_up, pixel_size=px)[inner], 45.0, rtol=1e-6)
    np.testing.assert_allclose(value("ASPECT", east_up, pixel_size=px)[inner], 270.0, rtol=1e-6)
    np.testing.assert_allclose(value("EASTNESS", east_up, pixel_size=px)[inner], -1.0, atol=1e-6)
    south_up = cols.T * px * math.tan(math.radians(30))  # rises southwards: 30°, faces north
    np.testing.assert_allclose(value("SLOPE", south_up, pixel_size=px)[inner], 30.0, rtol=1e-5)
    asp = value("ASPECT", south_up, pixel_size=px)[inner]
    assert np.all((asp < 1e-3) | (asp > 360 - 1e-3))
    np.testing.assert_allclose(value("NORTHNESS", south_up, pixel_size=px)[inner], 1.0, atol=1e-6)
    north_up = -south_up  # faces south
    np.testing.assert_allclose(value("ASPECT", north_up, pixel_size=px)[inner], 180.0, rtol=1e-6)
    flat = np.full((5, 5), 3000.0, np.float32)
    assert not value("SLOPE", flat).any() and not value("ASPECT", flat).any() and not value("NORTHNESS", flat).any()


def test_terrain_features_need_the_pixel_size():
    with pytest.raises(ModelContractError, match="pixel size"):
        value("SLOPE", np.zeros((3, 3)), pixel_size=None)


def test_reach_of_a_contract():
    assert features.feature_reach(contract_with("S2:B03", "NDSI(S2:B03,S2:B11)")) == 0
    assert features.feature_reach(contract_with("SLOPE(DEM)", "GAUSS(S2:B04)")) == 4


@pytest.mark.parametrize("name", NEIGHBOURHOOD)
def test_tiles_padded_by_reflection_equal_the_whole_image(name):
    """A tile read with its reach of context (reflected beyond the raster, as tiled
    inference pads it) gives the whole-image values on the tile."""
    rng = np.random.default_rng(1)
    band = (rng.random((40, 50)) * 1000).astype(np.float32)
    whole = value(name, band)
    reach = features.FEATURE_REACH[name]
    assert reach >= 1
    for row, col, size in ((0, 0, 16), (10, 20, 16), (24, 34, 16)):  # corner, interior, far corner
        ri = reflect_index(np.arange(row - reach, row + size + reach), 40)
        ci = reflect_index(np.arange(col - reach, col + size + reach), 50)
        tile = value(name, band[ri[:, None], ci[None, :]])[reach:-reach, reach:-reach]
        np.testing.assert_allclose(tile, whole[row : row + size, col : col + size], rtol=1e-5, atol=1e-4)


def test_model_inputs_compute_features_with_the_pixel_size():
    dem = np.tile(np.arange(6, dtype=np.float32), (6, 1)) * 10.0
    c = ModelContract("glacier", (ClassInfo("glacier", 1, "#66ccff"),),
                      (InputSpec("DEM", scale=0.001), InputSpec("SLOPE(DEM)", mean=45.0, std=10.0)),
                      10.0, 32, "sigmoid", {}, receptive_field_px=4)
    x = features.model_inputs(c, {"DEM": dem}, pixel_size=10.0)
    assert x.shape == (2, 6, 6) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], dem * 0.001)
    np.testing.assert_allclose(x[1, 1:-1, 1:-1], 0.0, atol=1e-5)  # 45° slope, standardised


# ------------------------------------------------------------------ slope and aspect, one home
def plane(rows, cols, east, south, row_m, col_m):
    """A DEM rising ``east`` m/m eastwards and ``south`` m/m southwards (rows run south)."""
    r, c = np.mgrid[0:rows, 0:cols]
    return east * c * col_m + south * r * row_m


@pytest.mark.parametrize("method", ["horn", "central"])
def test_both_gradient_methods_measure_a_plane_exactly(method):
    dem = plane(7, 9, 0.3, -0.4, 30.0, 20.0)
    gx, gy = features.terrain_gradient(dem, (30.0, 20.0), method)
    inner = (slice(1, -1), slice(1, -1))  # Horn mirrors the edges, central goes one-sided there
    np.testing.assert_allclose(gx[inner], 0.3, rtol=1e-12)
    np.testing.assert_allclose(gy[inner], -0.4, rtol=1e-12)
    np.testing.assert_allclose(features.slope_deg(dem, (30.0, 20.0), method)[inner], math.degrees(math.atan(0.5)),
                               rtol=1e-12)


def test_central_differences_are_numpy_gradient_as_rgi7_and_the_band_ratio_mapper_had_them():
    rng = np.random.default_rng(4)
    dem = rng.normal(3000, 50, (12, 15))
    gy, gx = np.gradient(dem, 25.0)  # the inventory's former code, one cell size
    ours = features.terrain_gradient(dem, 25.0, "central")
    assert np.array_equal(ours[0], gx) and np.array_equal(ours[1], gy)
    gy, gx = np.gradient(dem, 30.0, 20.0)  # the band-ratio mapper's former code, (row, column) sizes
    slope = np.degrees(np.arctan(np.hypot(gx, gy)))
    assert np.array_equal(features.slope_deg(dem, (30.0, 20.0), "central"), slope)
    assert not features.slope_deg(dem[:1], (30.0, 20.0), "central").any()  # one row: no slope, no error
    assert np.isnan(features.slope_deg(np.where(dem > 3050, np.nan, dem), 25.0, "central")).any()
    with pytest.raises(ValueError, match="unknown terrain gradient method"):
        features.terrain_gradient(dem, 25.0, "sobel")


def test_area_aspect_is_the_azimuth_of_the_mean_downslope_gradient():
    mask = np.ones((6, 6), bool)
    for east, south, azimuth in ((-0.2, 0.0, 90.0), (0.0, 0.2, 0.0), (0.2, 0.0, 270.0), (0.0, -0.2, 180.0),
                                 (-0.2, -0.2, 135.0)):
        gx, gy = features.terrain_gradient(plane(6, 6, east, south, 10.0, 10.0), 10.0, "central")
        assert features.mean_aspect_deg(gx, gy, mask) == pytest.approx(azimuth)
        horn = value("ASPECT", plane(6, 6, east, south, 10.0, 10.0).astype(np.float32), pixel_size=10.0)
        assert horn[2, 2] == pytest.approx(azimuth, abs=1e-4)  # the pixel aspect of the model features agrees
