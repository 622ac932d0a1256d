"""Local metric CRSs, geodesic areas and small OGR vector I/O shared by the inventory tools.

Geometries are shapely 2 objects with x = easting/longitude (``always_xy``); CRSs are
anything ``pyproj.CRS.from_user_input`` accepts (EPSG code, WKT, ``"EPSG:4326"``).
"""
from __future__ import annotations

import codecs
import contextlib
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


ID_FIELDS = ("rgi_id", "rgiid", "glac_id")  # RGI 7, RGI 5/6, GLIMS (case-insensitive)


def feature_name(attrs: Dict[str, Any], fid: Any) -> str:
    """A glacier's name in messages and ids: its RGI 7 ``rgi_id``, RGI 5/6 ``RGIId`` or GLIMS
    ``glac_id``, else the feature id."""
    lower = {k.lower(): v for k, v in attrs.items()}
    for key in ID_FIELDS:
        if lower.get(key) not in (None, ""):
            return str(lower[key])
    return str(fid)


@contextlib.contextmanager
def _recoded_to_utf8():
    """Let OGR recode shapefile text to UTF-8 from the file's .cpg / DBF code page.

    QGIS sets SHAPE_ENCODING to "" (no recoding, it decodes text itself), so inside QGIS OGR
    hands Latin-1 bytes to Python as they are; unset it while we read."""
    from osgeo import gdal

    before = gdal.GetConfigOption("SHAPE_ENCODING")
    gdal.SetConfigOption("SHAPE_ENCODING", None)
    try:
        yield
    finally:
        gdal.SetConfigOption("SHAPE_ENCODING", before)


def _source_encoding(path: str) -> str:
    """The encoding a shapefile's .cpg names (OGR's fallback when it cannot recode), else UTF-8."""
    cpg = os.path.splitext(path)[0] + ".cpg"
    if os.path.isfile(cpg):
        with open(cpg, "rb") as f:
            name = f.read().decode("ascii", "replace").strip()
        try:
            return codecs.lookup({"8859_1": "iso-8859-1"}.get(name, name)).name
        except LookupError:
            pass
    return "utf-8"


def _text(value: Any, encoding: str) -> Any:
    """Text OGR could not hand over as UTF-8 (bytes, or a str with surrogate escapes) decoded
    with the source's encoding."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            value = value.encode("utf-8", "surrogateescape")
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.decode(encoding if encoding != "utf-8" else "latin-1", "replace")
    return value


# Invalid outlines are repaired by GEOS MakeValid ('linework' method, the PostGIS ST_MakeValid
# algorithm: the faces the rings enclose an odd number of times), keeping the polygonal parts. The repair is refused when that reading and the one that keeps everything
# the rings enclose (method 'structure') differ by more than this fraction of the area: then
# the outline crosses itself around a real area and no rule can say which shape was meant.
REPAIR_AREA_TOLERANCE = 0.01


def feature_label(fid: int, attrs: Dict[str, Any]) -> str:
    """How a message names a feature: its id and, where it has one, its RGI/GLIMS id or name."""
    for key in ID_FIELDS + ("name", "glac_name"):
        for k, v in attrs.items():
            if k.lower() == key and v not in (None, ""):
                return f"feature {fid} ({k} {v})"
    return f"feature {fid}"


def valid_polygon(geom: BaseGeometry, label: str, where: str, progress=None) -> BaseGeometry:
    """``geom`` as a valid (multi)polygon: kept when valid, else repaired by the rule above with
    a warning naming the feature, or refused (``InputError`` naming it) when the repair is
    ambiguous or leaves no area. Point or line geometry is refused: the input needs polygons."""
    kind = geom.geom_type
    if kind not in ("Polygon", "MultiPolygon", "GeometryCollection"):
        raise InputError(f"{where} holds {kind} geometry ({label}) but needs polygons. "
                         "Give a polygon layer (e.g. glacier outlines, a mask drawn as polygons).")
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon")]
    if kind == "GeometryCollection" and not parts:
        raise InputError(f"{where}: {label} holds no polygon but needs polygons. Give a polygon layer.")
    if geom.is_valid and kind != "GeometryCollection":
        return geom
    reason = shapely.is_valid_reason(geom)

    def polygonal(g):
        keep = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
        return shapely.union_all(keep) if keep else shapely.Polygon()

    repaired = polygonal(shapely.make_valid(geom))
    if repaired.is_empty or repaired.area == 0:
        raise InputError(f"{where}: {label} is invalid ({reason}) and has no area once repaired. "
                         "Fix or remove it (e.g. Vector › Geometry Tools › Fix Geometries) and run again.")
    enclosed = polygonal(shapely.make_valid(geom, method="structure")).area
    change = abs(enclosed - repaired.area) / max(enclosed, repaired.area)
    if change > REPAIR_AREA_TOLERANCE:
        raise InputError(
            f"{where}: {label} is invalid ({reason}) and crosses itself around a real area: repaired, its area "
            f"is {repaired.area:.6g} or {enclosed:.6g} (layer units², {100 * change:.1f} % apart, more than the "
            f"{100 * REPAIR_AREA_TOLERANCE:g} % tolerated), so its true shape is unknown. Redraw that outline and run again.")
    if progress is not None:
        progress.push_info(
            f"Warning: {where}: {label} is invalid ({reason}); repaired with GEOS MakeValid, keeping its polygons "
            f"(area as drawn {abs(geom.area):.6g}, repaired {repaired.area:.6g} layer units²).")
    return repaired


def read_features(path: str, layer: Optional[str] = None, progress=None, polygons: bool = True) -> Features:
    """All features of a vector layer (OGR): 2-D shapely geometries, attributes (text as
    ``str`` whatever the source's encoding), CRS.

    With ``polygons`` (the default) every geometry passes ``valid_polygon``: invalid outlines
    are repaired or refused by one stated rule, never used as they are, and a point or line
    layer is refused as "needs polygons"; warnings go to ``progress``."""
    ogr, _ = _ogr()
    with _recoded_to_utf8():
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
        encoding = _source_encoding(path)
        defn = lyr.GetLayerDefn()
        fields = [defn.GetFieldDefn(i) for i in range(defn.GetFieldCount())]
        out = Features([], srs.ExportToWkt(), [], [ogr.FieldDefn(f.GetName(), f.GetType()) for f in fields], [])
        for f, src in zip(out.fields, fields):
            f.SetWidth(src.GetWidth())
            f.SetPrecision(src.GetPrecision())
        for feat in lyr:
            g = feat.GetGeometryRef()
            geom = shapely.force_2d(shapely.from_wkb(bytes(g.ExportToIsoWkb()))) if g is not None else None
            attrs = {f.GetName(): _text(feat.GetField(f.GetName()), encoding) for f in fields}
            if polygons and geom is not None and not geom.is_empty:
                geom = valid_polygon(geom, feature_label(feat.GetFID(), attrs),
                                     f"Layer '{lyr.GetName()}' of {os.path.basename(path)}", progress)
            out.geoms.append(geom)
            out.attributes.append(attrs)
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
    options = ["ENCODING=UTF-8"] if driver_name == "ESRI Shapefile" else []  # .cpg says UTF-8, text is UTF-8
    lyr = ds.CreateLayer(name, srs, gtype, options)
    for f in fields:
        lyr.CreateField(f)
    defn = lyr.GetLayerDefn()
    index = {f.GetName(): i for i, f in enumerate(fields)}  # by position: shapefiles cut names to 10 characters
    lyr.StartTransaction()
    for geom, attrs in zip(geoms, attributes):
        feat = ogr.Feature(defn)
        for key, value in attrs.items():
            if value is not None:
                feat.SetField(index[key], value)
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
