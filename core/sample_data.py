"""A small synthetic Sentinel-2-like mountain scene with a known answer.

Two valley glaciers flow west and east from one col (one complex, split by the divide at
the col), their lower tongues debris-covered, proglacial lakes beyond both termini, two
small cirque glaciers and a tarn, alpine meadow in the valley bottoms, rock elsewhere and
a no-data wedge in one corner (a swath edge). Reflectances are surface reflectances of
each cover type in the Sentinel-2 MSI bands, taken from the spectral-library values
reported in Dozier (1989) and Painter et al. (2009) for snow, Paul et al. (2002) and
Gjermundsen et al. (2011) for clean and debris-covered ice, the USGS spectral library
(Kokaly et al. 2017) for granite/gneiss rock and alpine meadow, and Wessels et al. (2002)
for turbid glacial lakes; images are shaded by the DEM's illumination and carry sensor
noise, and boundaries are mixed pixels (as in a real 20 m image).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np
from scipy import ndimage

S2_BANDS = ("S2:B02", "S2:B03", "S2:B04", "S2:B08", "S2:B11", "S2:B12")
LANDCOVER = {"rock": 1, "vegetation": 2, "snow": 3, "clean_ice": 4, "debris_ice": 5, "water": 6}
# Surface reflectance (0–1) in S2 B02 (490 nm), B03 (560), B04 (665), B08 (842), B11 (1610), B12 (2190).
SPECTRA: Dict[str, Tuple[float, ...]] = {
    "snow": (0.93, 0.91, 0.88, 0.78, 0.11, 0.07),
    "clean_ice": (0.56, 0.53, 0.48, 0.34, 0.045, 0.03),
    "debris_ice": (0.09, 0.11, 0.13, 0.17, 0.22, 0.19),
    "rock": (0.12, 0.15, 0.18, 0.23, 0.30, 0.26),
    "vegetation": (0.035, 0.07, 0.045, 0.38, 0.21, 0.11),
    "water": (0.09, 0.13, 0.11, 0.045, 0.015, 0.01),
}
CRS = "EPSG:32632"  # UTM 32N (European Alps)
ORIGIN = (630000.0, 5190000.0)  # upper-left corner
SUN_AZIMUTH_DEG, SUN_ELEVATION_DEG = 150.0, 40.0
ELA_M = 3150.0  # equilibrium-line altitude: snow above, bare ice below


@dataclass(frozen=True)
class SampleScene:
    """Paths of the generated files (all on one grid) and their shape."""

    image: str  # uint16 reflectance ×10000, bands S2_BANDS (descriptions set), nodata 0
    dem: str  # float32 metres
    landcover: str  # uint8 LANDCOVER codes, 0 where the image is nodata
    glacier_truth: str  # uint8: 0 no ice, 1 clean ice (snow on glaciers too), 2 debris-covered ice, 255 nodata
    lake_truth: str  # uint8: 0 no lake, 1 lake, 255 nodata
    size: int
    pixel_size: float


def _smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    """Zero-mean, unit-std spatially correlated noise."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return (field - field.mean()) / (field.std() + 1e-12)


def terrain(size: int, pixel_size: float, seed: int = 0) -> Dict[str, np.ndarray]:
    """DEM and cover masks of the two-glacier valley (arrays, row 0 = north)."""
    rng = np.random.default_rng(seed)
    n = size
    extent = n * pixel_size
    y, x = np.mgrid[0:n, 0:n].astype(np.float64) * pixel_size + pixel_size / 2
    cx = extent / 2
    centre_line = extent / 2 + 0.03 * extent * np.sin(2 * np.pi * x / extent * 1.3)
    dx = np.abs(x - cx) / (extent / 2)  # 0 at the col, 1 at the east/west edges
    dy = (y - centre_line) / (extent / 2)
    floor = 3300.0 - 950.0 * dx**1.2
    walls = 1500.0 * (1 - np.exp(-((dy / 0.42) ** 2)))
    peaks = 250.0 * np.exp(-(((x - 0.25 * extent) ** 2 + (y - 0.15 * extent) ** 2) / (0.08 * extent) ** 2))
    peaks += 300.0 * np.exp(-(((x - 0.72 * extent) ** 2 + (y - 0.86 * extent) ** 2) / (0.09 * extent) ** 2))
    rough = 45.0 * _smooth_noise(rng, (n, n), 6) + 12.0 * _smooth_noise(rng, (n, n), 1.5)
    dem = floor + walls + peaks + rough

    # Valley glaciers: the valley floor within a tongue that narrows to each terminus.
    terminus = 0.66
    edge_noise = 0.018 * _smooth_noise(rng, (n, n), 5)
    half_width = 0.16 * np.sqrt(np.clip(1 - (dx / terminus) ** 2, 0, 1)) + 0.035
    glacier = (np.abs(dy + edge_noise) < half_width) & (dx < terminus)
    # Cirque glaciers high on the peaks (separate complexes).
    cirque = (peaks > 170.0 + 30.0 * _smooth_noise(rng, (n, n), 4)) & ~glacier
    ice = glacier | cirque
    # Glacier surfaces are smooth: replace the rough relief on ice with a gentle surface.
    dem = np.where(ice, floor + walls * 0.5 + peaks + 0.3 * rough, dem)
    dem = ndimage.gaussian_filter(dem, 1.0)

    debris = glacier & (dx > terminus * 0.68 + 0.04 * _smooth_noise(rng, (n, n), 4))
    snow = ice & ~debris & (dem > ELA_M)

    # Proglacial lakes beyond both termini and a tarn on a bench: flat water surfaces.
    lakes = np.zeros((n, n), bool)
    lake_specs = [(cx - (terminus + 0.1) * extent / 2, 0.045, 0.028),
                  (cx + (terminus + 0.09) * extent / 2, 0.038, 0.024)]
    for lx, ax, ay in lake_specs:
        ly = np.interp(lx, x[0], centre_line[0])
        lakes |= ((x - lx) / (ax * extent)) ** 2 + ((y - ly) / (ay * extent)) ** 2 < 1
    tarn_x, tarn_y = 0.55 * extent, 0.25 * extent
    lakes |= ((x - tarn_x) ** 2 + (y - tarn_y) ** 2) < (0.022 * extent) ** 2
    lakes &= ~ice
    for label in range(1, ndimage.label(lakes)[1] + 1):
        part = ndimage.label(lakes)[0] == label
        dem[part] = dem[part].min() - 2.0

    vegetation = (dem < 2650.0 + 60.0 * _smooth_noise(rng, (n, n), 3)) & ~ice & ~lakes
    return {"dem": dem.astype(np.float32), "glacier": glacier, "cirque": cirque, "debris": debris,
            "snow": snow, "lakes": lakes, "vegetation": vegetation}


def ice_cap(size: int, pixel_size: float, outlets: int = 5, seed: int = 0,
            noise_m: float = 4.0) -> Dict[str, np.ndarray]:
    """DEM and masks of a dome-shaped ice cap drained by ``outlets`` outlet glaciers (arrays, row 0 = north).

    The ice surface is a Vialov (1958) steady-state dome, 500 m high over a 1500 m plateau,
    whose margin lies at 0.36 of the grid's width from the centre and reaches 10 % further
    along the outlets. ``outlets`` radial valleys, equally spaced in azimuth and deepening
    outwards (150 m at the margin), are cut into ice and bed alike, so that each outlet
    drains one sector of the cap; beyond the margin the bed falls 200 m per cap radius.
    Spatially correlated noise of standard deviation ``noise_m`` roughens the surface.
    Returns ``dem`` (float32, m), ``ice`` (bool) and ``sector`` (int: 1..outlets, the outlet
    whose valley is nearest in azimuth; 0 off the ice)."""
    rng = np.random.default_rng(seed)
    n = size
    extent = n * pixel_size
    y, x = np.mgrid[0:n, 0:n].astype(np.float64) * pixel_size + pixel_size / 2
    r = np.hypot(x - extent / 2, y - extent / 2)
    azimuth = np.arctan2(x - extent / 2, extent / 2 - y) + 0.3  # clockwise from north, valleys off the axes
    valley = 0.5 * (1.0 + np.cos(outlets * azimuth))  # 1 on a valley's axis, 0 on the ridge between two
    margin = 0.36 * extent * (1.0 + 0.10 * valley)
    rho = r / margin
    dome = 500.0 * np.clip(1.0 - rho ** (4.0 / 3.0), 0.0, 1.0) ** (3.0 / 8.0)
    ground = -200.0 * np.clip(rho - 1.0, 0.0, None)
    dem = 1500.0 + dome + ground - 150.0 * valley * rho ** 1.5 + noise_m * _smooth_noise(rng, (n, n), 4)
    ice = rho < 1.0
    sector = (np.round(azimuth * outlets / (2 * np.pi)).astype(int) % outlets + 1) * ice
    return {"dem": dem.astype(np.float32), "ice": ice, "sector": sector}


def illumination(dem: np.ndarray, pixel_size: float) -> np.ndarray:
    """Cosine of the solar incidence angle on each pixel (Lambertian shading)."""
    gy, gx = np.gradient(dem.astype(np.float64), pixel_size)
    slope = np.arctan(np.hypot(gx, gy))
    aspect = np.arctan2(-gx, gy)  # downslope direction, clockwise from north (rows run south)
    zen = np.radians(90.0 - SUN_ELEVATION_DEG)
    az = np.radians(SUN_AZIMUTH_DEG)
    return np.cos(zen) * np.cos(slope) + np.sin(zen) * np.sin(slope) * np.cos(az - aspect)


def make_scene(out_dir: str, size: int = 512, pixel_size: float = 20.0, seed: int = 0) -> SampleScene:
    """Write the scene's GeoTIFFs into ``out_dir`` and return their paths."""
    import rasterio
    from rasterio.transform import from_origin

    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed + 1)
    t = terrain(size, pixel_size, seed)
    cover = np.full((size, size), LANDCOVER["rock"], np.uint8)
    cover[t["vegetation"]] = LANDCOVER["vegetation"]
    cover[t["lakes"]] = LANDCOVER["water"]
    ice = t["glacier"] | t["cirque"]
    cover[ice] = LANDCOVER["clean_ice"]
    cover[t["snow"]] = LANDCOVER["snow"]
    cover[t["debris"]] = LANDCOVER["debris_ice"]

    shade = np.clip(0.25 + 0.85 * illumination(t["dem"], pixel_size), 0.2, 1.15)
    shade = np.where(t["lakes"], 1.0, shade)  # flat water
    image = np.empty((len(S2_BANDS), size, size), np.float32)
    albedo = 1.0 + 0.06 * _smooth_noise(rng, (size, size), 8)
    for b in range(len(S2_BANDS)):
        refl = np.zeros((size, size), np.float64)
        for name, code in LANDCOVER.items():
            refl[cover == code] = SPECTRA[name][b]
        refl = ndimage.gaussian_filter(refl, 0.6)  # mixed pixels along boundaries
        refl *= shade * albedo * rng.normal(1.0, 0.02, (size, size))
        refl += rng.normal(0.0, 0.003, (size, size))
        image[b] = np.clip(np.round(refl * 10000.0), 1, 10000)

    rows, cols = np.mgrid[0:size, 0:size]
    nodata = rows + cols < 0.14 * size  # swath edge in the north-west corner
    image[:, nodata] = 0
    cover[nodata] = 0
    glacier_truth = np.zeros((size, size), np.uint8)
    glacier_truth[ice] = 1
    glacier_truth[t["debris"]] = 2
    glacier_truth[nodata] = 255
    lake_truth = t["lakes"].astype(np.uint8)
    lake_truth[nodata] = 255

    transform = from_origin(ORIGIN[0], ORIGIN[1], pixel_size, pixel_size)
    profile = dict(driver="GTiff", width=size, height=size, crs=CRS, transform=transform,
                   tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    paths = {k: os.path.join(out_dir, f"{k}.tif") for k in ("image", "dem", "landcover", "glacier_truth", "lake_truth")}
    with rasterio.open(paths["image"], "w", count=len(S2_BANDS), dtype="uint16", nodata=0, **profile) as dst:
        dst.write(image.astype(np.uint16))
        for i, name in enumerate(S2_BANDS, start=1):
            dst.set_band_description(i, name)
    with rasterio.open(paths["dem"], "w", count=1, dtype="float32", nodata=-9999.0, **profile) as dst:
        dst.write(t["dem"], 1)
        dst.set_band_description(1, "DEM")
    rasters = (("landcover", cover, 0), ("glacier_truth", glacier_truth, 255), ("lake_truth", lake_truth, 255))
    for key, arr, nd in rasters:
        with rasterio.open(paths[key], "w", count=1, dtype="uint8", nodata=nd, **profile) as dst:
            dst.write(arr, 1)
    return SampleScene(size=size, pixel_size=pixel_size, **paths)
