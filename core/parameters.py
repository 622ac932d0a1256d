"""Science constants of GlacierSeg, one documented home: each with its source (paper and the
place in it, or "chosen here" with how it was set).

Sections are appended per module (vectorize, band ratio, inventory here; the others come with their
modules' branches).
"""
from __future__ import annotations

# ------------------------------------------------------------------ vectorize (core/vectorize.py)
# Smallest outline kept and largest background hole filled: 0.01 km², the minimum glacier size of
# the Randolph Glacier Inventory and GLIMS (RGI Consortium 2017, RGI 6.0 Technical Report,
# section on the minimum glacier size); smaller regions are mostly noise or snow patches, smaller
# holes mostly misclassified pixels (larger ones are nunataks). The same number as the band-ratio
# mapper's glacier minimum; kept apart because outlines are of any class (lakes, landslides too).
OUTLINE_MIN_AREA_KM2 = 0.01
OUTLINE_FILL_HOLE_KM2 = 0.01
# Chaikin (1974), "An algorithm for high-speed curve generation", Computer Graphics and Image
# Processing 3(4), 346–349: cutting 1/4 of each segment at each corner converges to the uniform
# quadratic B-spline of the polygon (his construction; QGIS native:smoothgeometry's default offset).
SMOOTH_OFFSET = 0.25
# Chosen here (the default since vectorize's first version, docs/vectorize.md): 3 passes round a
# pixel staircase into a smooth line; each further pass doubles the vertices and changes little.
SMOOTH_ITERATIONS = 3

# ------------------------------------------------------------------ band ratio (core/band_ratio.py)
# Clean ice: red/SWIR ratio (TM3/TM5) above 2.0 — Paul F. et al. (2002), Ann. Glaciol. 34,
# 355–361, the threshold stated in their method description; 1.8–2.6 is the range of later
# studies (Paul & Kääb 2005, Ann. Glaciol. 42). No equation number: the threshold is in the text.
RATIO_THRESHOLD = 2.0
# NDSI (Hall D.K. et al. 1995, Remote Sens. Environ. 54, 127–140, who map snow at NDSI ≥ 0.4):
# 0.6 for glacier ice is chosen here (stricter than snow; kept since the mapper's first version).
NDSI_THRESHOLD = 0.6
# Chosen here: SWIR reflectance below 1e-4 (one Sentinel-2 digital number) counts as 1e-4, so
# the ratio stays finite over dark water and shadow.
RATIO_SWIR_FLOOR = 1e-4
# Chosen here: water removed from the ice mask where NDWI (McFeeters S.K. 1996, Int. J. Remote
# Sens. 17, 1425–1432; water at NDWI > 0 there) exceeds 0.3, the lake mapper's default, since
# clean ice and snow reach NDWI ≈ 0–0.25.
WATER_NDWI_THRESHOLD = 0.3
# Debris-covered ice candidates: slope below 24° — Paul F. et al. (2004), Remote Sens. Environ.
# 89, 510–518 (their slope criterion for debris-covered ice).
DEBRIS_SLOPE_MAX_DEG = 24.0
# Chosen here: non-vegetated means NDVI (Rouse et al. 1974) below 0.2 (bare rock and debris
# stay below it; Paul et al. 2004 exclude vegetation by NDVI without a number we could check).
DEBRIS_NDVI_MAX = 0.2
# Smallest glacier outline kept: 0.01 km², the RGI/GLIMS inventory minimum (RGI Consortium
# 2023, RGI 7.0 Technical Note, minimum glacier size).
GLACIER_MIN_AREA_KM2 = 0.01
# Glacial lakes (Wang X. et al. 2020, Earth Syst. Sci. Data 12, 2169–2182, HMA glacial lake
# inventory): at least 0.0054 km² (six 30 m Landsat pixels) and within 10 km of a glacier.
LAKE_MIN_AREA_KM2 = 0.0054
LAKE_MAX_DISTANCE_M = 10000.0
# Chosen here: NDWI above 0.3 is water (glacial-lake studies use 0.2–0.55, review: Jawak S.D.
# et al. 2015, Adv. Remote Sens. 4, 196–213), and a water body is a lake when its median slope
# is at most 5° (lakes are flat; steep shadow and ice that look like water are not).
LAKE_NDWI_THRESHOLD = 0.3
LAKE_SLOPE_MAX_DEG = 5.0

# ------------------------------------------------------------------ inventory (core/inventory.py)
# Local grid of each glacier's topography: dx = 14·sqrt(A) + 10 m (A in km²), rounded, at most
# 100 m — OGGM's "square" grid rule (Maussion F. et al. 2019, GMD 12, 909–931; OGGM params.cfg
# d1 = 14, d2 = 10, dmax = 100) with which RGI 7 computed its attributes (RGI Consortium 2023).
TOPO_DX_PER_SQRT_KM2 = 14.0
TOPO_DX_OFFSET_M = 10.0
TOPO_DX_MAX_M = 100.0
# Chosen here: cells of margin around each glacier's grid (room for the bilinear DEM resampling
# and the one-cell boundary erosion that finds the terminus).
GRID_BORDER_CELLS = 5
