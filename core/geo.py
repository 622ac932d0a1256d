"""Local metric CRSs, geodesic areas and small OGR vector I/O shared by the inventory tools.

Geometries are shapely 2 objects with x = easting/longitude (``always_xy``); CRSs are
anything ``pyproj.CRS.from_user_input`` accepts (EPSG code, WKT, ``"EPSG:4326"``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import shapely
from pyproj import CRS, Geod, Transformer
from shapely.geometry.base import BaseGeometry

from .errors import InputError

WGS84 = CRS.from_epsg(4326)
_GEOD = Geod(ellps="WGS84")
_DRIVERS = {".gpkg": "GPKG", ".shp": "ESRI Shapefile", ".geojson": "GeoJSON", ".json": "GeoJSON"}


def utm_zone_for(lon: float) -> int:
    """UTM zone number (1–60) of a longitude (the regular 6° zones)."""
    return int((float(lon) + 180.0) // 6.0) % 60 + 1


def utm_epsg_for(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 / UTM zone holding (lon, lat): 326zz north, 327zz south."""
    return (32600 if lat >= 0 else 32700) + utm_zone_for(lon)


def transform_geom(geom: BaseGeometry, src_crs: Any, dst_crs: Any) -> BaseGeometry:
    """``geom`` reprojected from ``src_crs`` to ``dst_crs`` (vertices only, 2-D)."""
    src, dst = CRS.from_user_input(src_crs), CRS.from_user_input(dst_crs)
    if src == dst:
        return shapely.force_2d(geom)
    tr = Transformer.from_crs(src, dst, always_xy=True)
    return shapely.transform(shapely.force_2d(geom), lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def geodesic_area_m2(geom: BaseGeometry, crs: Any) -> float:
    """Area on the WGS 84 ellipsoid (m²) of a polygon given in ``crs`` (Karney 2013, via pyproj)."""
    lonlat = transform_geom(geom, crs, WGS84)
    return abs(_GEOD.geometry_area_perimeter(shapely.force_2d(lonlat))[0])


def utm_area_m2(geom: BaseGeometry, crs: Any) -> float:
    """Planar area (m²) in the UTM zone of the geometry's representative point."""
    lonlat = transform_geom(geom, crs, WGS84)
    p = lonlat.representative_point()
    return transform_geom(lonlat, WGS84, utm_epsg_for(p.x, p.y)).area


# ------------------------------------------------------------------------------ vector I/O
@dataclass
class Features:
    """Polygons (or lines) read from / written to a vector file, with their attributes."""

    geoms: List[BaseGeometry]
    crs_wkt: str
    attributes: List[Dict[str, Any]] = field(default_factory=list)
    fields: List[Any] = field(default_factory=list)  # ogr.FieldDefn of the source layer
    fids: List[int] = field(default_factory=list)


def _ogr():
    from osgeo import ogr, osr

    ogr.UseExceptions()
    osr.UseExceptions()
    return ogr, osr


def read_features(path: str, layer: Optional[str] = None) -> Features:
    """All features of a vector layer (OGR): 2-D shapely geometries, attributes, CRS."""
    ogr, _ = _ogr()
    try:
        ds = ogr.Open(path)
    except RuntimeError as exc:
        raise InputError(f"Cannot open vector file '{path}' ({exc}). Give a GeoPackage or shapefile.") from None
    lyr = ds.GetLayerByName(layer) if layer else ds.GetLayer(0)
    if lyr is None:
        raise InputError(f"'{path}' has no layer '{layer}'. Pick one of its layers.")
    srs = lyr.GetSpatialRef()
    if srs is None:
        raise InputError(f"Layer '{lyr.GetName()}' in '{path}' has no CRS. Assign it a CRS and run again.")
    defn = lyr.GetLayerDefn()
    fields = [defn.GetFieldDefn(i) for i in range(defn.GetFieldCount())]
    out = Features([], srs.ExportToWkt(), [], [ogr.FieldDefn(f.GetName(), f.GetType()) for f in fields], [])
    for f, src in zip(out.fields, fields):
        f.SetWidth(src.GetWidth())
        f.SetPrecision(src.GetPrecision())
    for feat in lyr:
        g = feat.GetGeometryRef()
        geom = shapely.force_2d(shapely.from_wkb(bytes(g.ExportToIsoWkb()))) if g is not None else None
        out.geoms.append(geom)
        out.attributes.append({f.GetName(): feat.GetField(f.GetName()) for f in fields})
        out.fids.append(feat.GetFID())
    return out


def write_features(
    path: str,
    geoms: Sequence[BaseGeometry],
    crs_wkt: str,
    attributes: Sequence[Dict[str, Any]],
    fields: Sequence[Any],
    layer_name: Optional[str] = None,
    geometry: str = "polygon",
) -> None:
    """Write geometries and attributes (``fields``: ogr.FieldDefn list) to a new file.

    The driver follows the extension (.gpkg, .shp, .geojson); polygons are written as
    MultiPolygons so one layer holds single- and multi-part features alike.
    """
    ogr, osr = _ogr()
    driver_name = _DRIVERS.get(os.path.splitext(path)[1].lower())
    if driver_name is None:
        raise InputError(f"Cannot write '{path}': use a .gpkg, .shp or .geojson file name.")
    srs = osr.SpatialReference()
    srs.ImportFromWkt(crs_wkt)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    gtype = ogr.wkbMultiPolygon if geometry == "polygon" else ogr.wkbMultiLineString
    ds = ogr.GetDriverByName(driver_name).CreateDataSource(path)
    name = layer_name or os.path.splitext(os.path.basename(path))[0].lstrip(".")
    lyr = ds.CreateLayer(name, srs, gtype)
    for f in fields:
        lyr.CreateField(f)
    defn = lyr.GetLayerDefn()
    lyr.StartTransaction()
    for geom, attrs in zip(geoms, attributes):
        feat = ogr.Feature(defn)
        for key, value in attrs.items():
            if value is not None:
                feat.SetField(key, value)
        multi = shapely.multipolygons(shapely.get_parts(geom)) if geometry == "polygon" else \
            shapely.multilinestrings(shapely.get_parts(geom))
        feat.SetGeometry(ogr.CreateGeometryFromWkb(shapely.to_wkb(multi)))
        lyr.CreateFeature(feat)
    lyr.CommitTransaction()
    ds = None  # noqa: F841 (closes and flushes the file)


# ------------------------------------------------------------------------- rasters on local grids
def raster_cell_size_m(path: str, lon: float, lat: float) -> float:
    """Geometric-mean cell size (m) of a raster near (lon, lat), whatever its CRS."""
    import rasterio

    with rasterio.open(path) as src:
        if src.crs is None:
            raise InputError(f"Raster '{path}' has no CRS. Assign it one (Raster > Projections > Assign Projection).")
        rx, ry = abs(src.res[0]), abs(src.res[1])
        if src.crs.is_geographic:
            dx = _GEOD.inv(lon, lat, lon + rx, lat)[2]
            dy = _GEOD.inv(lon, lat, lon, lat + ry)[2]
        else:
            factor = src.crs.linear_units_factor[1]
            dx, dy = rx * factor, ry * factor
    return float(np.sqrt(dx * dy))


def grid_around(bounds: Sequence[float], dx: float, pad_cells: int):
    """(transform, (rows, cols)) of a north-up grid of ``dx`` cells snapped to multiples of
    ``dx`` that covers ``bounds`` (minx, miny, maxx, maxy) plus ``pad_cells`` cells each side."""
    from rasterio.transform import from_origin

    x0 = (np.floor(bounds[0] / dx) - pad_cells) * dx
    y0 = (np.floor(bounds[1] / dx) - pad_cells) * dx
    x1 = (np.ceil(bounds[2] / dx) + pad_cells) * dx
    y1 = (np.ceil(bounds[3] / dx) + pad_cells) * dx
    shape = (int(round((y1 - y0) / dx)), int(round((x1 - x0) / dx)))
    return from_origin(x0, y1, dx, dx), shape


def warp_raster(path: str, dst_crs: Any, transform, shape, resampling: str = "bilinear") -> np.ndarray:
    """Band 1 of a raster resampled onto a grid (float64, NaN where it has no data)."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    out = np.full(shape, np.nan, np.float32)
    with rasterio.open(path) as src:
        if src.crs is None:
            raise InputError(f"Raster '{path}' has no CRS. Assign it one (Raster > Projections > Assign Projection).")
        reproject(rasterio.band(src, 1), out, src_nodata=src.nodata, dst_transform=transform,
                  dst_crs=CRS.from_user_input(dst_crs).to_wkt(), dst_nodata=np.nan,
                  resampling=getattr(Resampling, resampling))
    return out.astype(np.float64)
