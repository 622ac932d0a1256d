"""Model input channels from raster bands: sensor bands and derived features.

A contract input named ``S2:B04`` is that band; one named ``NDSI(S2:B03,S2:B11)`` is a
derived feature of the named bands. Features are defined once here and computed the same
way in training and inference. Register a feature with ``@feature("NAME")``.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Mapping, Tuple

import numpy as np

from .contract import InputSpec, ModelContract
from .errors import ModelContractError

FeatureFn = Callable[..., np.ndarray]
FEATURES: Dict[str, FeatureFn] = {}
# Features whose value at a pixel depends on its neighbours, with their reach in pixels
# (added to the tile overlap so tiled and whole-image inputs agree).
FEATURE_REACH: Dict[str, int] = {}


def feature(name: str, reach_px: int = 0):
    """Register ``fn(*bands, pixel_size=...) -> array`` as derived feature ``name``."""

    def register(fn: FeatureFn) -> FeatureFn:
        FEATURES[name.upper()] = fn
        FEATURE_REACH[name.upper()] = reach_px
        return fn

    return register


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a − b) / (a + b), 0 where a + b = 0."""
    a = a.astype(np.float32, copy=False)
    b = b.astype(np.float32, copy=False)
    total = a + b
    out = np.zeros(np.broadcast(a, b).shape, dtype=np.float32)
    np.divide(a - b, total, out=out, where=total != 0)
    return out


# Normalised-difference indices; argument order is the formula's (first − second).
for _name, _doc in {
    "NDSI": "Normalised difference snow index (green, SWIR1) — Hall et al. 1995.",
    "NDWI": "Normalised difference water index (green, NIR) — McFeeters 1996.",
    "NDVI": "Normalised difference vegetation index (NIR, red) — Rouse et al. 1974.",
    "NDMI": "Normalised difference moisture index (NIR, SWIR1) — Gao 1996.",
    "NBR": "Normalised burn ratio (NIR, SWIR2) — Key & Benson 2006.",
}.items():

    def _nd(a, b, pixel_size=None, _doc=_doc):
        return normalized_difference(a, b)

    _nd.__doc__ = _doc
    feature(_name)(_nd)


def feature_reach(contract: ModelContract) -> int:
    """Largest neighbourhood reach (px) of the contract's derived features."""
    reach = 0
    for spec in contract.bands:
        f = spec.feature
        if f:
            reach = max(reach, FEATURE_REACH.get(f[0], 0))
    return reach


def validate_features(contract: ModelContract) -> None:
    """Refuse a contract whose inputs use a derived feature not registered here."""
    for spec in contract.bands:
        f = spec.feature
        if f and f[0] not in FEATURES:
            raise ModelContractError(
                f"model input {spec.name!r} uses unknown derived feature {f[0]!r}; "
                f"known features: {', '.join(sorted(FEATURES))}."
            )


def compute_input(spec: InputSpec, bands: Mapping[str, np.ndarray], pixel_size: float) -> np.ndarray:
    """One model input channel (before scaling) from the named raster bands."""
    f = spec.feature
    if f is None:
        return bands[spec.name].astype(np.float32, copy=False)
    name, args = f
    return FEATURES[name](*(bands[a] for a in args), pixel_size=pixel_size).astype(np.float32, copy=False)


def model_inputs(contract: ModelContract, bands: Mapping[str, np.ndarray], pixel_size: float) -> np.ndarray:
    """Stack the contract's inputs, scaled, as a float32 (C, H, W) array."""
    return np.stack(
        [spec.normalise(compute_input(spec, bands, pixel_size)) for spec in contract.bands]
    ).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- image filters
# Neighbourhood features mirror the raster at its edges (scipy mode "mirror", the same
# reflection tiled inference pads tiles with), so whole-image and tiled values agree.
_EDGE_MODE = "mirror"
GAUSS_SIGMA_PX = 1.0
GAUSS_TRUNCATE = 4.0


@feature("GRAY")
def grayscale(*bands: np.ndarray, pixel_size=None) -> np.ndarray:
    """Grayscale intensity: the mean of the argument bands (e.g. ``GRAY(S2:B04,S2:B03,S2:B02)``)."""
    return np.mean([b.astype(np.float32, copy=False) for b in bands], axis=0, dtype=np.float32)


@feature("GAUSS", reach_px=int(GAUSS_TRUNCATE * GAUSS_SIGMA_PX + 0.5))
def gaussian_blur(band: np.ndarray, pixel_size=None) -> np.ndarray:
    """Gaussian blur, σ = 1 px (kernel radius 4 px)."""
    from scipy import ndimage

    return ndimage.gaussian_filter(band.astype(np.float32), GAUSS_SIGMA_PX, mode=_EDGE_MODE, truncate=GAUSS_TRUNCATE)


@feature("MEDIAN", reach_px=1)
def median_blur(band: np.ndarray, pixel_size=None) -> np.ndarray:
    """3 × 3 median filter (speckle and salt-and-pepper noise removal)."""
    from scipy import ndimage

    return ndimage.median_filter(band.astype(np.float32), size=3, mode=_EDGE_MODE)


def _sobel(band: np.ndarray) -> tuple:
    """Horn (1981) / Sobel derivative estimates per pixel: (d/dx eastwards, d/dy southwards)."""
    from scipy import ndimage

    b = band.astype(np.float64)
    return ndimage.sobel(b, axis=1, mode=_EDGE_MODE) / 8.0, ndimage.sobel(b, axis=0, mode=_EDGE_MODE) / 8.0


@feature("SOBELX", reach_px=1)
def sobel_x(band: np.ndarray, pixel_size=None) -> np.ndarray:
    """Sobel gradient along columns (eastwards), band units per pixel — Sobel & Feldman 1968."""
    return _sobel(band)[0].astype(np.float32)


@feature("SOBELY", reach_px=1)
def sobel_y(band: np.ndarray, pixel_size=None) -> np.ndarray:
    """Sobel gradient along rows (southwards), band units per pixel — Sobel & Feldman 1968."""
    return _sobel(band)[1].astype(np.float32)


@feature("SOBEL", reach_px=1)
def sobel_magnitude(band: np.ndarray, pixel_size=None) -> np.ndarray:
    """Sobel gradient magnitude, band units per pixel — Sobel & Feldman 1968."""
    gx, gy = _sobel(band)
    return np.hypot(gx, gy).astype(np.float32)


# --------------------------------------------------------------------------- terrain
# The one home of slope and aspect from a DEM. Two gradient methods, by design:
# "horn" — Horn (1981) 3 × 3 weighted differences (Sobel / 8, edges mirrored), as gdaldem: the
#   model's terrain features, computed the same in tiles and whole images;
# "central" — central differences inside, one-sided at the edges (numpy.gradient): OGGM's
#   definition (Maussion et al. 2019), with which RGI 7 computed its glacier slope and aspect
#   (inventory attributes), also used by the band-ratio mapper's slope tests.
TERRAIN_METHODS = ("horn", "central")


def terrain_gradient(dem: np.ndarray, pixel_size, method: str = "horn") -> Tuple[np.ndarray, np.ndarray]:
    """(dz/dx eastwards, dz/dy southwards) of a DEM in metres, float64, by ``method`` (above);
    ``pixel_size``: metres, one number or (row, column)."""
    if pixel_size is None or np.any(np.asarray(pixel_size, dtype=float) <= 0):
        raise ModelContractError("terrain features (SLOPE, ASPECT, ...) need the raster's pixel size in metres.")
    if method not in TERRAIN_METHODS:
        raise ValueError(f"unknown terrain gradient method {method!r}; one of {', '.join(TERRAIN_METHODS)}")
    row_m, col_m = (pixel_size, pixel_size) if np.isscalar(pixel_size) else pixel_size
    if method == "central":
        if dem.shape[0] < 2 or dem.shape[1] < 2:  # no neighbour to difference with: flat
            return np.zeros(dem.shape), np.zeros(dem.shape)
        spacing = (pixel_size,) if np.isscalar(pixel_size) else (row_m, col_m)
        gy, gx = np.gradient(dem.astype(np.float64), *spacing)
        return gx, gy
    gx, gy = _sobel(dem)
    return gx / col_m, gy / row_m


def slope_deg(dem: np.ndarray, pixel_size, method: str = "horn") -> np.ndarray:
    """Slope in degrees (float64) from a DEM in metres; NaN where the DEM is NaN."""
    return gradient_slope_deg(*terrain_gradient(dem, pixel_size, method))


def gradient_slope_deg(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Slope in degrees of the gradient (``gx``, ``gy``) in metres per metre."""
    return np.degrees(np.arctan(np.hypot(gx, gy)))


def mean_aspect_deg(gx: np.ndarray, gy: np.ndarray, mask: np.ndarray) -> float:
    """Aspect of an area (RGI 7 / OGGM): azimuth, degrees clockwise from north, of the mean
    downslope gradient vector of its cells (``gx`` eastwards, ``gy`` southwards, as
    ``terrain_gradient`` returns them)."""
    return math.degrees(math.atan2(np.mean(-gx[mask]), np.mean(gy[mask]))) % 360.0


@feature("SLOPE", reach_px=1)
def slope(dem: np.ndarray, pixel_size=None) -> np.ndarray:
    """Slope in degrees from a DEM in metres (Horn 1981 3 × 3 gradient)."""
    return slope_deg(dem, pixel_size, "horn").astype(np.float32)


def _aspect_rad(dem: np.ndarray, pixel_size) -> tuple:
    gx, gy = terrain_gradient(dem, pixel_size, "horn")
    flat = (gx == 0) & (gy == 0)
    # downslope direction (-gx east, +gy north as rows run south), clockwise from north
    return np.mod(np.arctan2(-gx, gy), 2 * np.pi), flat


@feature("ASPECT", reach_px=1)
def aspect(dem: np.ndarray, pixel_size=None) -> np.ndarray:
    """Aspect (direction the slope faces) in degrees clockwise from north, 0 on flat ground (Horn 1981)."""
    a, flat = _aspect_rad(dem, pixel_size)
    return np.where(flat, 0.0, np.degrees(a)).astype(np.float32)


@feature("NORTHNESS", reach_px=1)
def northness(dem: np.ndarray, pixel_size=None) -> np.ndarray:
    """cos(aspect): 1 facing north, −1 facing south, 0 on flat ground (continuous, unlike aspect)."""
    a, flat = _aspect_rad(dem, pixel_size)
    return np.where(flat, 0.0, np.cos(a)).astype(np.float32)


@feature("EASTNESS", reach_px=1)
def eastness(dem: np.ndarray, pixel_size=None) -> np.ndarray:
    """sin(aspect): 1 facing east, −1 facing west, 0 on flat ground."""
    a, flat = _aspect_rad(dem, pixel_size)
    return np.where(flat, 0.0, np.sin(a)).astype(np.float32)
