"""Model input channels from raster bands: sensor bands and derived features.

A contract input named ``S2:B04`` is that band; one named ``NDSI(S2:B03,S2:B11)`` is a
derived feature of the named bands. Features are defined once here and computed the same
way in training and inference. Register a feature with ``@feature("NAME")``.
"""
from __future__ import annotations

from typing import Callable, Dict, Mapping

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
def _terrain_gradient(dem: np.ndarray, pixel_size) -> tuple:
    if not pixel_size or pixel_size <= 0:
        raise ModelContractError("terrain features (SLOPE, ASPECT, ...) need the raster's pixel size in metres.")
    gx, gy = _sobel(dem)
    return gx / pixel_size, gy / pixel_size


@feature("SLOPE", reach_px=1)
def slope(dem: np.ndarray, pixel_size=None) -> np.ndarray:
    """Slope in degrees from a DEM in metres (Horn 1981 3 × 3 gradient)."""
    gx, gy = _terrain_gradient(dem, pixel_size)
    return np.degrees(np.arctan(np.hypot(gx, gy))).astype(np.float32)


def _aspect_rad(dem: np.ndarray, pixel_size) -> tuple:
    gx, gy = _terrain_gradient(dem, pixel_size)
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
