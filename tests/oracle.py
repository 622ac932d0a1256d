"""Independent numpy computation of the sample model's answer (the tests' oracle).

Written from the sample model's definition (NDSI/NDWI, three 3×3 box filters, logistic
with gain 12), not from GlacierSeg's inference code: mirror boundary at the raster edge,
inputs zeroed at nodata pixels, precedence lake > glacier.
"""
import numpy as np
import rasterio
from scipy import ndimage

GAIN = 12.0
BANDS = {"S2:B03": 2, "S2:B08": 4, "S2:B11": 5}  # band numbers in the generated scene


def _index(a, b, valid):
    x = (a - b) / (a + b + 1e-6)
    x[~valid] = 0.0
    for _ in range(3):
        x = ndimage.uniform_filter(x, 3, mode="mirror")
    return x


def sample_expectation(image_path, bands=BANDS):
    """(probabilities (2, H, W) with NaN at nodata, classes (H, W) with 255 at nodata)."""
    with rasterio.open(image_path) as src:
        img = {name: src.read(b).astype(np.float64) for name, b in bands.items()}
        nodata = src.nodata
    valid = np.ones(next(iter(img.values())).shape, bool)
    for a in img.values():
        valid &= np.isfinite(a) & ((a != nodata) if nodata is not None else True)
    g, n, s = (np.nan_to_num(img[k]) * 1e-4 for k in ("S2:B03", "S2:B08", "S2:B11"))
    g, n, s = (np.where(valid, v, 0.0) for v in (g, n, s))
    p_glacier = 1.0 / (1.0 + np.exp(-GAIN * (_index(g, s, valid) - 0.4)))
    p_lake = 1.0 / (1.0 + np.exp(-GAIN * (_index(g, n, valid) - 0.3)))
    classes = np.where(p_lake >= 0.5, 2, np.where(p_glacier >= 0.5, 1, 0)).astype(np.uint8)
    classes[~valid] = 255
    probs = np.stack([p_glacier, p_lake])
    probs[:, ~valid] = np.nan
    return probs, classes
