"""The one home of geometry and raster-grid helpers: local metric CRSs, geodesic areas,
pixel size in metres, the vector source value adapters hand the core, reading and writing
polygon layers (OGR), rasterizing geometries onto a grid.

Geometries are shapely 2 objects with x = easting/longitude (``always_xy``); CRSs are
anything ``pyproj.CRS.from_user_input`` accepts (EPSG code, WKT, ``"EPSG:4326"``, a
rasterio CRS).
"""
from __future__ import annotations

import codecs
import contextlib
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

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


def utm_crs_for(bounds: Sequence[float], crs: Any) -> str:
    """``EPSG:326zz``/``327zz``: the WGS 84 / UTM zone of the centre of ``bounds``
    (xmin, ymin, xmax, ymax in ``crs``)."""
    x, y = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
    return f"EPSG:{utm_epsg_for(*Transformer.from_crs(crs, WGS84, always_xy=True).transform(x, y))}"


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


# ------------------------------------------------------------------------------ pixel size
def pixel_size_m(crs: Any, transform, *, at: Optional[Tuple[float, float]] = None, row_north: bool = False,
                 geographic: str = "geodesic", name: str = "The raster") -> Tuple[float, float]:
    """(row, column) size in metres of a pixel of the grid ``transform`` in ``crs``: the one
    rule for every module.

    Projected CRS: the transform's steps times the CRS's linear unit (metres when the CRS
    states none). Geographic CRS with ``geographic="geodesic"``: the pixel's sides measured on
    the WGS 84 ellipsoid (Karney 2013, via pyproj) from the point ``at`` (x, y in the CRS;
    default the grid's origin), the column step eastwards along the parallel and the row step
    along the meridian, southwards (the way rows run) or with ``row_north`` northwards (the
    band-ratio mapper's historical choice, kept so its outputs stay identical; the two differ
    by less than 1e-7 of the size). ``geographic="refuse"``: ``InputError`` asking for a
    projection, for callers that need one size in metres over the whole raster (model
    resolution, training). No CRS: ``InputError``."""
    if crs is None:
        raise InputError(f"{name} has no coordinate reference system; assign one (Layer Properties › Source) first.")
    c = CRS.from_user_input(crs)
    a, e = abs(transform.a), abs(transform.e)
    if not c.is_geographic:  # step lengths: a rotated grid's steps have two components each
        factor = c.axis_info[0].unit_conversion_factor if c.axis_info else 1.0
        return math.hypot(transform.b, transform.e) * factor, math.hypot(transform.a, transform.d) * factor
    if geographic == "refuse":
        raise InputError(f"{name} is in a geographic CRS ({c.to_string()}, pixel size in degrees); reproject it "
                         "(Raster › Projections › Warp) to its UTM zone first.")
    x, y = (transform.c, transform.f) if at is None else at
    dy = _GEOD.inv(x, y, x, y + e if row_north else y - e)[2]
    return dy, _GEOD.inv(x, y, x + a, y)[2]


def raster_pixel_size_m(ds, geographic: str = "geodesic") -> Tuple[float, float]:
    """``pixel_size_m`` of an open raster (rasterio dataset), measured at the centre of its
    middle pixel (row step northwards) where its CRS is geographic."""
    return pixel_size_m(ds.crs, ds.transform, at=ds.xy(ds.height // 2, ds.width // 2), row_north=True,
                        geographic=geographic)


# ------------------------------------------------------------------------------ vector sources
@dataclass(frozen=True)
class VectorSource:
    """A polygon layer as adapters hand it to the core: a file OGR reads and, for files with
    several layers, the layer's name. ``VectorSource.of`` takes this value, a path, a QGIS
    layer source ``'file.gpkg|layername=x'`` or a (path, layer) pair."""

    path: str
    layer: Optional[str] = None

    @classmethod
    def of(cls, source: "SourceLike", layer: Optional[str] = None) -> "VectorSource":
        """The vector source of any convention; ``layer``, when given, names the layer."""
        if isinstance(source, VectorSource):
            return source if layer is None else cls(source.path, layer)
        if isinstance(source, tuple):
            return cls(os.fspath(source[0]), layer or source[1])
        parts = os.fspath(source).split("|")
        named = next((p.split("=", 1)[1] for p in parts[1:] if p.lower().startswith("layername=")), None)
        return cls(parts[0], layer or named)

    def __str__(self) -> str:
        return f"{self.path}|layername={self.layer}" if self.layer else self.path


SourceLike = Union[VectorSource, str, "os.PathLike[str]", Tuple[str, Optional[str]]]


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
# algorithm: the faces the rings enclose an odd number of times), keeping the polygonal parts.
# The repair is refused when that reading and the one that keeps everything
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
            f"{100 * REPAIR_AREA_TOLERANCE:g} % tolerated), so its true shape is unknown. Redraw that outline and "
            "run again.")
    if progress is not None:
        progress.push_info(
            f"Warning: {where}: {label} is invalid ({reason}); repaired with GEOS MakeValid, keeping its polygons "
            f"(area as drawn {abs(geom.area):.6g}, repaired {repaired.area:.6g} layer units²).")
    return repaired


@contextlib.contextmanager
def open_layer(source: SourceLike, layer: Optional[str] = None, update: bool = False) -> Iterator[Any]:
    """The OGR layer of a vector source (its dataset open inside the block, for writing with
    ``update``); ``InputError`` when the file does not open as a vector layer, lacks the named
    layer or has no CRS."""
    ogr, _ = _ogr()
    src = VectorSource.of(source, layer)
    try:
        ds = ogr.Open(src.path, 1 if update else 0)
    except RuntimeError as exc:
        raise InputError(f"Cannot open vector file '{src.path}' ({exc}). Give a GeoPackage or shapefile.") from None
    if ds is None:
        raise InputError(f"Cannot open vector file '{src.path}' (missing, or not a vector format OGR reads). "
                         "Give a GeoPackage or shapefile.")
    lyr = ds.GetLayerByName(src.layer) if src.layer else ds.GetLayer(0)
    if lyr is None:
        raise InputError(f"'{src.path}' has no layer '{src.layer}'. Pick one of its layers.")
    if lyr.GetSpatialRef() is None:
        raise InputError(f"Layer '{lyr.GetName()}' in '{src.path}' has no CRS. Assign it a CRS and run again.")
    try:
        yield lyr
    finally:
        lyr = ds = None  # noqa: F841 (the layer lives only while its dataset does)


def field_names(source: SourceLike) -> List[str]:
    """Attribute field names of a vector layer."""
    with open_layer(source) as lyr:
        defn = lyr.GetLayerDefn()
        return [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]


def layer_crs_wkt(source: SourceLike) -> str:
    """WKT of a vector layer's CRS."""
    with open_layer(source) as lyr:
        return lyr.GetSpatialRef().ExportToWkt()


def read_features(path: SourceLike, layer: Optional[str] = None, progress=None, polygons: bool = True) -> Features:
    """All features of a vector layer (OGR): 2-D shapely geometries, attributes (text as
    ``str`` whatever the source's encoding), CRS. ``path`` is any vector source
    (``VectorSource``, a path, ``'file.gpkg|layername=x'``); ``layer`` names the layer.

    With ``polygons`` (the default) every geometry passes ``valid_polygon``: invalid outlines
    are repaired or refused by one stated rule, never used as they are, and a point or line
    layer is refused as "needs polygons"; warnings go to ``progress``."""
    ogr, _ = _ogr()
    src = VectorSource.of(path, layer)
    with _recoded_to_utf8(), open_layer(src) as lyr:
        encoding = _source_encoding(src.path)
        defn = lyr.GetLayerDefn()
        fields = [defn.GetFieldDefn(i) for i in range(defn.GetFieldCount())]
        out = Features([], lyr.GetSpatialRef().ExportToWkt(), [],
                       [ogr.FieldDefn(f.GetName(), f.GetType()) for f in fields], [])
        for f, field_defn in zip(out.fields, fields):
            f.SetWidth(field_defn.GetWidth())
            f.SetPrecision(field_defn.GetPrecision())
        where = f"Layer '{lyr.GetName()}' of {os.path.basename(src.path)}"
        for feat in lyr:
            _append_feature(out, feat, fields, encoding, where if polygons else None, progress)
    return out


def _append_feature(out: Features, feat, fields, encoding: str, polygons_where: Optional[str], progress) -> None:
    """One OGR feature appended to ``out``: its 2-D geometry (through ``valid_polygon`` when
    ``polygons_where`` names the layer), its attributes as text decoded, its id."""
    g = feat.GetGeometryRef()
    geom = shapely.force_2d(shapely.from_wkb(bytes(g.ExportToIsoWkb()))) if g is not None else None
    attrs = {f.GetName(): _text(feat.GetField(f.GetName()), encoding) for f in fields}
    if polygons_where and geom is not None and not geom.is_empty:
        geom = valid_polygon(geom, feature_label(feat.GetFID(), attrs), polygons_where, progress)
    out.geoms.append(geom)
    out.attributes.append(attrs)
    out.fids.append(feat.GetFID())


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
    """Geometric-mean cell size (m) of a raster near (lon, lat), whatever its CRS
    (``pixel_size_m`` measured at (lon, lat) where the CRS is geographic)."""
    import rasterio

    with rasterio.open(path) as src:
        if src.crs is None:
            raise InputError(f"Raster '{path}' has no CRS. Assign it one (Raster > Projections > Assign Projection).")
        dy, dx = pixel_size_m(src.crs, src.transform, at=(lon, lat), row_north=True)
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


# ------------------------------------------------------------------------------ rasterize
def rasterize(shapes: Iterable[Tuple[Any, int]], transform, shape: Tuple[int, int], *, all_touched: bool = False,
              dtype: str = "uint8", fill: int = 0) -> np.ndarray:
    """(geometry, value) pairs burnt onto the grid ``transform``/``shape`` (GDAL's rasterizer via
    rasterio: cells whose centre is inside, or every cell touched with ``all_touched``; later
    pairs on top), ``fill`` elsewhere. Geometries are shapely objects or GeoJSON-like dicts in
    the grid's CRS."""
    from rasterio.features import rasterize as burn

    shapes = list(shapes)
    if not shapes:
        return np.full(shape, fill, dtype=dtype)
    return burn(shapes, out_shape=shape, transform=transform, fill=fill, all_touched=all_touched, dtype=dtype)


def cells_inside(geom: BaseGeometry, transform, shape: Tuple[int, int]) -> np.ndarray:
    """Boolean mask of the cells whose centre is in ``geom`` (OGGM's rule for glacier
    statistics); all touched cells for outlines smaller than a cell, so none is empty."""
    mask = rasterize([(geom, 1)], transform, shape).astype(bool)
    if not mask.any():
        mask = rasterize([(geom, 1)], transform, shape, all_touched=True).astype(bool)
    return mask
