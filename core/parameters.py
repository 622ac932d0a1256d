"""The one documented parameters module for GlacierSeg's science constants.

Each section belongs to one module (named in its heading comment) and each constant states its
source: paper with section/equation/table, an open implementation that keeps the paper's value,
or "chosen here, measured by …" with the command that measured it. Sections are appended at
the end of the file; a module reads its constants from here, never from a copy.

Section "glacier split" (core/dem_split.py) comes first and is importable without the split's
own dependencies (scipy, shapely, pysheds) so the Processing adapter can show it."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError

# ---------------------------------------------------------------------------------------------
# Glacier split — core/dem_split.py (Kienholz et al., 2013, J. Glaciol. 59(217), 925–937)
#
# Sources. The paper's methods text (Sections 2–3, equations, tables) could not be read here —
# the stored copies end inside Section 1 — so no section, equation or table number is cited.
# a = 14.3, b = 0.5, c = 3500 m (on a 40 m grid), the 4-cell buffer, the 1-cell gutter offset,
# the 100 m gutter depth and the sliver areas 0.1 / 0.2 km²: OGGM/partitioning
# (partitioning/core.py: _create_p_glac, preprocessing, _is_sliver), which states it keeps the
# paper's workflow and values; compactness 2·sqrt(pi·A)/P < 0.5: MASSIVE's kienholz.py
# (filter_out_slivers; its a = 5.72, c = 1400 m on 10 m cells are its own). D-infinity
# routing (Tarboton 1997): both implementations. Chosen here, measured by
# benchmarks/bench_split.py and the ice-cap/edge-strip tests: the 3×3 median (OGGM 5×5), the
# 2-cell gutter (OGGM 1), the interior-piece and edge-strip rules, the merge neighbour ratio,
# the void limit. docs/glacier-split.md lists every deviation.
# ---------------------------------------------------------------------------------------------

ROUTINGS = ("dinf", "d8")
# DEM voids (core/dem.py, also the split's and the inventory's limit): chosen here
MAX_VOID_FRACTION = 0.3  # more of an outline without elevation than this is not filled


@dataclass(frozen=True)
class SplitParameters:
    """Parameters of the split; see the module docstring and docs/glacier-split.md for their sources."""

    cell_size_m: float = 40.0  # working grid (the method's, see a_cell_m); 0: the DEM's own cell size
    buffer_cells: int = 4  # DEM used within this many cells of the outline (buffer 1)
    gutter_offset_cells: float = 1.0  # the gutter starts this far outside the outline ...
    gutter_cells: float = 2.0  # ... and is this wide
    gutter_depth_m: float = 100.0  # how far the gutter is lowered
    smoothing_cells: int = 3  # median-filter window of the DEM smoothing (1: none)
    routing: str = "dinf"  # flow routing: "dinf" (D-infinity, Tarboton 1997, as OGGM/partitioning) or "d8"
    a: float = 14.3  # r = min(a·F^b, c), F in cells of a_cell_m (scaled to the grid)
    b: float = 0.5
    c_m: float = 3500.0
    a_cell_m: float = 40.0  # cell size the constant a refers to
    sliver_area_km2: float = 0.1  # pieces smaller than this are slivers
    sliver_area2_km2: float = 0.2  # ... and those smaller than this that are not compact
    sliver_compactness: float = 0.5  # compactness 2·sqrt(pi·A)/P below which a piece is elongated
    interior_area_km2: float = 1.0  # ours: pieces smaller than this ...
    interior_rim_share: float = 0.5  # ... with less of their perimeter on the complex outline are merged
    #   (round values; +0.006–0.008 IoU on the shared cases, bench_split.py)
    edge_strip_neighbour_share: float = 0.3  # ours: elongated pieces < interior area with >= interior_rim_share on
    #   the outline and >= this share along one neighbour are edge strips, merged into it (a strip along a
    #   glacier shares >= 0.46, narrow glaciers at HEF 0.15–0.18)
    merge_neighbour_ratio: float = 2.0  # ours: interior pieces / edge strips only join a neighbour this many
    #   times larger (keeps ice-cap sectors apart: tests/test_split_glaciers.py, ice-cap test)
    max_void_fraction: float = MAX_VOID_FRACTION  # more of a complex without elevation: left unsplit

    def validate(self) -> None:
        """Raise InputError naming each parameter out of its range."""
        checks = {
            "cell_size_m": self.cell_size_m >= 0,
            "buffer_cells": self.buffer_cells >= self.gutter_offset_cells + self.gutter_cells,
            "gutter_offset_cells": self.gutter_offset_cells >= 0, "gutter_cells": self.gutter_cells >= 1,
            "gutter_depth_m": self.gutter_depth_m > 0,
            "smoothing_cells": self.smoothing_cells >= 1, "a": self.a > 0, "b": self.b > 0, "c_m": self.c_m > 0,
            "a_cell_m": self.a_cell_m > 0, "sliver_area_km2": self.sliver_area_km2 >= 0,
            "sliver_area2_km2": self.sliver_area2_km2 >= 0, "sliver_compactness": self.sliver_compactness >= 0,
            "interior_area_km2": self.interior_area_km2 >= 0, "interior_rim_share": 0 <= self.interior_rim_share <= 1,
            "edge_strip_neighbour_share": 0 <= self.edge_strip_neighbour_share <= 1,
            "merge_neighbour_ratio": self.merge_neighbour_ratio >= 0,
            "max_void_fraction": 0 <= self.max_void_fraction < 1, "routing": self.routing in ROUTINGS,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise InputError(f"Invalid split parameter(s) {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}: "
                             "sizes must be positive and the gutter must lie within the buffer. "
                             "See docs/glacier-split.md for the defaults.")

    def radius_m(self, flow_acc_cells: float, dx: float) -> float:
        """Merge radius of a pour point: r = min(a·F'^b, c), F' = F·(dx/a_cell_m)² (F in grid cells).

        Equivalently a is scaled to the grid as a·(dx/a_cell_m)^(2b) and applied to F."""
        f_ref = flow_acc_cells * (dx / self.a_cell_m) ** 2
        return min(self.a * f_ref ** self.b, self.c_m)


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
