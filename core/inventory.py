"""RGI 7-style inventory attributes of glacier outlines from a DEM.

Follows the RGI 7.0 attribute definitions (RGI Consortium 2023, RGI 7.0 Technical Note /
user guide, "Data fields: glacier product"), whose topographic attributes were computed
with OGGM (Maussion et al. 2019, GMD 12, 909–931) on a local grid per glacier:
cell size dx = 14·sqrt(A) + 10 m (A in km², rounded, at most 100 m), bilinear DEM
resampling, statistics over the cells whose centre lies in the outline. ``lmax_m``
(longest centerline, Kienholz et al. 2014) is not computed.
"""
from __future__ import annotations

import logging
import math
import os
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np
import shapely
from scipy import ndimage
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from .dem import PLAUSIBLE_ELEVATION_M, Dem, fill_voids
from .errors import CancelledError, InputError, NoDemError, first_reasons
from .features import gradient_slope_deg, mean_aspect_deg, terrain_gradient
from .geo import (
    WGS84,
    SourceLike,
    cells_inside,
    feature_name,
    geodesic_area_m2,
    grid_around,
    read_features,
    transform_geom,
    utm_epsg_for,
    utm_zone_for,
    write_features,
)
from .io import atomic_output
from .parameters import GRID_BORDER_CELLS, MAX_VOID_FRACTION, TOPO_DX_MAX_M, TOPO_DX_OFFSET_M, TOPO_DX_PER_SQRT_KM2
from .progress import Progress, check_cancel, ensure_progress

LOG = logging.getLogger("glacierseg.inventory")

# (name, OGR type) of the fields written, in order.
ATTRIBUTE_FIELDS = (
    ("area_km2", "real"), ("cenlon", "real"), ("cenlat", "real"), ("utm_zone", "int"),
    ("zmin_m", "real"), ("zmax_m", "real"), ("zmed_m", "real"), ("zmean_m", "real"),
    ("slope_deg", "real"), ("aspect_deg", "real"), ("aspect_sec", "int"),
    ("termlon", "real"), ("termlat", "real"), ("dem_source", "str"), ("src_date", "str"),
    ("filled_pct", "real"),
)
TOPOGRAPHY = ("zmin_m", "zmax_m", "zmed_m", "zmean_m", "slope_deg", "aspect_deg", "aspect_sec", "termlon", "termlat",
              "filled_pct")


def topo_cell_size_m(area_km2: float) -> float:
    """OGGM/RGI 7 local grid spacing: round(14·sqrt(A) + 10) m, at most 100 m."""
    return float(min(np.rint(TOPO_DX_PER_SQRT_KM2 * math.sqrt(max(area_km2, 0.0)) + TOPO_DX_OFFSET_M),
                     TOPO_DX_MAX_M))


def aspect_sector(aspect_deg: float) -> int:
    """RGI aspect sector: 1 = N [-22.5°, 22.5°), 2 = NE, ... 8 = NW; 9 = not assigned."""
    if not np.isfinite(aspect_deg):
        return 9
    return int(((aspect_deg + 22.5) % 360.0) // 45.0) + 1


def glacier_attributes(geom: BaseGeometry, crs: Any, dem: Union[str, Dem], name: str = "glacier",
                       max_void_fraction: float = MAX_VOID_FRACTION) -> Dict[str, Any]:
    """Area, centre, UTM zone and DEM topography of one glacier outline (RGI 7 definitions).

    Topography on the glacier's UTM grid of ``topo_cell_size_m(area)``: zmin/zmax/zmed/zmean
    of the cells, mean slope of the cells (central differences), aspect = azimuth of the
    mean downslope gradient vector, terminus = lowest cell on the outer boundary (the one
    nearest to their centre when several share it), as OGGM's compute_hypsometry_attributes.
    DEM voids (core.dem) are filled first; ``filled_pct`` is the share of the glacier's cells
    filled. More than ``max_void_fraction`` without elevation raises ``NoDemError``."""
    if isinstance(dem, str):
        with Dem(dem) as opened:
            return glacier_attributes(geom, crs, opened, name, max_void_fraction)
    if geom is None or geom.is_empty:
        raise InputError(f"Glacier '{name}' has no geometry. Remove it or repair the layer.")
    lonlat = transform_geom(geom, crs, WGS84)
    centre = lonlat.representative_point()
    area_km2 = geodesic_area_m2(geom, crs) / 1e6
    epsg = utm_epsg_for(centre.x, centre.y)
    utm = transform_geom(geom, crs, epsg)
    dx = topo_cell_size_m(area_km2)
    transform, shape = grid_around(utm.bounds, dx, GRID_BORDER_CELLS)
    z = dem.read(epsg, transform, shape, "bilinear")
    mask = cells_inside(utm, transform, shape)
    missing = float((~np.isfinite(z[mask])).mean())
    if missing > max_void_fraction or not np.isfinite(z).any():
        raise NoDemError(
            f"The DEM '{dem.name}' does not cover glacier '{name}' ({100 * missing:.0f} % of it has no elevation; at "
            f"most {100 * max_void_fraction:.0f} % is filled from the surroundings). Use a DEM that covers every "
            "outline, or leave that glacier out.")
    dem_z, void = fill_voids(z)
    z = dem_z[mask]
    sx, sy = terrain_gradient(dem_z, dx, "central")  # OGGM's / RGI 7's; rows run south: sy = -dz/dnorth
    slope = gradient_slope_deg(sx, sy)
    aspect = mean_aspect_deg(sx, sy, mask)
    exterior = cells_inside(shapely.union_all([Polygon(p.exterior) for p in shapely.get_parts(utm)]), transform, shape)
    edge = exterior & ~ndimage.binary_erosion(exterior)
    if not edge.any():
        edge = mask
    rows, cols = np.nonzero(edge & (dem_z == np.min(dem_z[edge])))
    k = int(np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2))
    tx, ty = transform * (cols[k] + 0.5, rows[k] + 0.5)
    term = transform_geom(shapely.Point(tx, ty), epsg, WGS84)
    return {
        "area_km2": area_km2, "cenlon": centre.x, "cenlat": centre.y, "utm_zone": utm_zone_for(centre.x),
        "zmin_m": float(z.min()), "zmax_m": float(z.max()), "zmed_m": float(np.median(z)), "zmean_m": float(z.mean()),
        "slope_deg": float(np.mean(slope[mask])), "aspect_deg": aspect, "aspect_sec": aspect_sector(aspect),
        "termlon": term.x, "termlat": term.y, "filled_pct": 100.0 * float(void[mask].mean()),
    }


def inventory_attributes(
    outlines_path: "SourceLike",
    dem_path: str,
    output_path: str,
    dem_source: Optional[str] = None,
    src_date: Optional[str] = None,
    outlines_layer: Optional[str] = None,
    plausible_elevation: Sequence[float] = PLAUSIBLE_ELEVATION_M,
    max_void_fraction: float = MAX_VOID_FRACTION,
    progress: Optional[Progress] = None,
) -> Dict[str, Any]:
    """Copy glacier outlines (any vector source: ``core.geo.VectorSource``, a path, or a path and
    ``outlines_layer``) with their fields plus the RGI 7-style attributes to ``output_path``.

    ``dem_source`` defaults to the DEM's file name; ``src_date`` (outline date, ISO 8601)
    defaults to the outlines' own ``src_date`` field where they have one. Fields of the
    input with the same names as the attributes are replaced. A glacier whose topography
    cannot be computed (off the DEM, or an error) keeps empty topography fields and a
    warning names it; only when no glacier has topography is the run refused."""
    progress = ensure_progress(progress, LOG)
    if src_date:
        src_date = outline_date(src_date)
    feats = read_features(outlines_path, outlines_layer, progress)
    if not feats.geoms:
        raise InputError(f"'{outlines_path}' holds no features. Give a layer of glacier outlines.")
    dem_source = dem_source or os.path.splitext(os.path.basename(dem_path))[0]
    fields = _output_fields(feats.fields)
    kept = [f.GetName() for f in fields]
    rows, failures = [], []
    with Dem(dem_path, plausible_elevation, progress) as dem:
        for i, (geom, attrs, fid) in enumerate(zip(feats.geoms, feats.attributes, feats.fids)):
            check_cancel(progress)
            row = {k: v for k, v in attrs.items() if k in kept}
            failure = _add_topography(row, geom, feats.crs_wkt, dem, feature_name(attrs, fid), max_void_fraction,
                                      progress)
            if failure:
                failures.append(failure)
            row["dem_source"] = dem_source
            row["src_date"] = src_date or _get(attrs, "src_date")
            rows.append(row)
            progress.set_progress(100.0 * (i + 1) / len(feats.geoms))
    _report(rows, failures, progress)
    with atomic_output(output_path, progress) as tmp:
        write_features(tmp, feats.geoms, feats.crs_wkt, rows, fields,
                       os.path.splitext(os.path.basename(output_path))[0])
    return {"output": output_path, "n_glaciers": len(rows), "n_without_topography": len(failures)}


def _output_fields(source_fields: Sequence[Any]) -> list:
    """ogr.FieldDefn list of the output: the input's fields, less those named like an
    attribute (case-insensitive), then ``ATTRIBUTE_FIELDS``."""
    from osgeo import ogr

    ours = {name.lower() for name, _ in ATTRIBUTE_FIELDS}
    types = {"int": ogr.OFTInteger, "str": ogr.OFTString, "real": ogr.OFTReal}
    fields = [f for f in source_fields if f.GetName().lower() not in ours]
    return fields + [ogr.FieldDefn(name, types[kind]) for name, kind in ATTRIBUTE_FIELDS]


def _add_topography(row: Dict[str, Any], geom: BaseGeometry, crs_wkt: str, dem: Dem, name: str,
                    max_void_fraction: float, progress: Progress) -> Optional[str]:
    """``glacier_attributes`` into ``row``; when they cannot be computed (a cancel aside), empty
    topography, area and centre where the geometry allows, a warning, and the failure returned."""
    try:
        row.update(glacier_attributes(geom, crs_wkt, dem, name, max_void_fraction))
        return None
    except CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 — one bad glacier never fails the layer
        progress.push_info(f"Warning: glacier '{name}' gets no topography: {exc}")
        row.update({k: None for k in TOPOGRAPHY})
        if geom is not None and not geom.is_empty:
            centre = transform_geom(geom, crs_wkt, WGS84).representative_point()
            row.update({"area_km2": geodesic_area_m2(geom, crs_wkt) / 1e6, "cenlon": centre.x,
                        "cenlat": centre.y, "utm_zone": utm_zone_for(centre.x)})
        return f"'{name}': {exc}"


def _report(rows: Sequence[Dict[str, Any]], failures: Sequence[str], progress: Progress) -> None:
    """Refuse the run when no glacier got topography; else say how many did and how much was filled."""
    if len(failures) == len(rows):
        raise InputError("No glacier got topography: " + first_reasons(failures))
    filled = [r["filled_pct"] for r in rows if r.get("filled_pct")]
    progress.push_info(f"{len(rows)} glacier(s): {len(rows) - len(failures)} with topography, {len(failures)} without; "
                       f"{len(filled)} had DEM voids filled (largest share {max(filled, default=0):.1f} %).")


def outline_date(text: str) -> str:
    """``text`` checked as the date of the outlines (RGI ``src_date``): an ISO 8601 date
    YYYY-MM-DD (a time after it is accepted and dropped), not in the future; else ``InputError``."""
    import datetime

    try:
        day = datetime.date.fromisoformat(text.strip()[:10])
        if len(text.strip()) > 10:
            datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"Outline date {text!r} is not an ISO 8601 date; write it as YYYY-MM-DD, e.g. 2003-08-29 "
                         "(the date of the image the outlines were drawn on).") from None
    if day > datetime.date.today():
        raise InputError(f"Outline date {text!r} lies in the future; give the date of the image the outlines were "
                         "drawn on.")
    return day.isoformat()


def _get(attrs: Dict[str, Any], key: str) -> Optional[str]:
    for k, v in attrs.items():
        if k.lower() == key and v not in (None, ""):
            return str(v)
    return None
