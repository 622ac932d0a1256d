"""The pipeline's calls into the single-raster engine, in one place.

Every call the regional pipeline makes to ``core.segment``, ``core.band_ratio``,
``core.vectorize``, ``core.dem_split``, ``core.inventory`` and ``core.geo`` goes through this
module, so a change of their signatures is adapted here only. Each function works on paths
and plain values (picklable: they run on Dask workers)."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..contract import ClassInfo
from ..dem_split import DIVIDE_FIELDS, GLACIER_FIELDS, SPLIT, UNSPLIT_ERROR, UNSPLIT_NO_DEM, split_complex
from ..errors import CancelledError, InputError, NoDemError
from ..geo import geodesic_area_m2, transform_geom, write_features
from ..inventory import ATTRIBUTE_FIELDS, TOPOGRAPHY, glacier_attributes
from ..parameters import SplitParameters

ICE = ClassInfo("glacier", 1, "#5ec8f2")  # the one class of the ice mosaic
ICE_NODATA = 255


def map_scene(scene: str, method: Dict[str, Any], classes_out: str, work_dir: str) -> Tuple[ClassInfo, ...]:
    """Class raster (uint8, 255 nodata) of one scene by ``method`` ({"kind": "model", "model": path,
    "threads": n, ...} or {"kind": "band_ratio", "sensor": ..., ...}); returns the class table."""
    stem = os.path.join(work_dir, os.path.splitext(os.path.basename(classes_out))[0])
    if method["kind"] == "model":
        from ..segment import segment_raster

        result = segment_raster(scene, method["model"], stem + ".probabilities.tif", classes_out,
                                threads=method.get("threads"), device=method.get("device", "cpu"),
                                batch_size=int(method.get("batch_size", 4)))
        os.remove(stem + ".probabilities.tif")
        contract = result.contract
        return tuple(c for c in contract.classes if c.value != contract.background.value)
    from ..band_ratio import GLACIER_CLASSES, map_glaciers

    options = {k: v for k, v in method.items() if k not in ("kind",)}
    map_glaciers(scene, stem + ".index.tif", classes_out, None, **options)
    os.remove(stem + ".index.tif")
    return tuple(GLACIER_CLASSES)


def outline_complexes(ice_mosaic: str, out_path: str, min_area_km2: float, source: str) -> int:
    """Glacier complexes (one polygon per connected ice region, joined across scene edges) of the
    ice mosaic, written to ``out_path`` by ``core.vectorize``; returns their number."""
    from ..vectorize import vectorize

    result = vectorize(ice_mosaic, out_path, [ICE], background_value=0, min_area_km2=min_area_km2,
                       source=source, layer_name="complexes")
    return result.feature_count


def read_complexes(path: str) -> Tuple[List[Any], str, List[str]]:
    """(geometries, CRS WKT, complex ids) of the complexes layer written by ``outline_complexes``;
    ids as ``split_glaciers`` gives them (``core.geo.feature_name``)."""
    from ..geo import feature_name, read_features

    feats = read_features(path, "complexes")
    ids = [feature_name(a, fid) for a, fid in zip(feats.attributes, feats.fids)]
    return feats.geoms, feats.crs_wkt, ids


def glaciers_of_complex(wkb: bytes, crs_wkt: str, dem: str, complex_id: str, params: SplitParameters,
                        dem_source: str, src_date: Optional[str]) -> Dict[str, Any]:
    """Split one complex with the DEM (Kienholz et al. 2013, ``core.dem_split``) and give each of
    its glaciers the RGI 7 attributes (``core.inventory``); as ``split_glaciers`` and
    ``inventory_attributes`` do for a layer: a complex that cannot be split stays whole with its
    ``split_status``, a glacier without topography keeps empty topography fields. Returns
    {"glaciers": [(wkb, attrs)], "divides": [(wkb, (i, j, length_m))], "warnings": [text]} in ``crs_wkt``."""
    import shapely

    geom = shapely.from_wkb(wkb)
    warnings: List[str] = []
    try:
        split = split_complex(geom, crs_wkt, dem, complex_id, params)
        parts = [(transform_geom(g, split.epsg, crs_wkt), SPLIT) for g in split.glaciers]
        divides = [(shapely.to_wkb(transform_geom(line, split.epsg, crs_wkt)), (i, j, line.length))
                   for i, j, line in split.divides]
    except CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 — one bad complex never fails the region (as split_glaciers)
        status = UNSPLIT_NO_DEM if isinstance(exc, NoDemError) else f"{UNSPLIT_ERROR}: {exc}"
        parts = [(shapely.force_2d(geom), status)]
        divides = []
        warnings.append(f"complex '{complex_id}' is kept unsplit ({status.split(':')[0]}): {exc}")
    glaciers = []
    for k, (g, status) in enumerate(parts):
        row: Dict[str, Any] = {"complex_id": complex_id, "split_status": status}
        try:
            row.update(glacier_attributes(g, crs_wkt, dem, f"{complex_id}/{k + 1}"))
        except CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 — as inventory_attributes: empty topography, a warning
            row.update({key: None for key in TOPOGRAPHY})
            row["area_km2"] = geodesic_area_m2(g, crs_wkt) / 1e6
            warnings.append(f"glacier '{complex_id}/{k + 1}' gets no topography: {exc}")
        row["dem_source"] = dem_source
        row["src_date"] = src_date
        glaciers.append((shapely.to_wkb(g), row))
    return {"glaciers": glaciers, "divides": divides, "warnings": warnings}


def glacier_fields() -> List[Tuple[str, str]]:
    """(name, kind) of the glaciers layer, as split_glaciers then inventory_attributes write it: the
    split's fields, then the RGI 7 attributes (which replace its area_km2 and filled_pct)."""
    ours = {n for n, _ in ATTRIBUTE_FIELDS}
    return [(n, k) for n, k in GLACIER_FIELDS if n not in ours] + list(ATTRIBUTE_FIELDS)


def divide_fields() -> List[Tuple[str, str]]:
    """(name, kind) of the divides layer (as split_glaciers writes it)."""
    return list(DIVIDE_FIELDS)


def write_layer(path: str, geoms: Sequence[Any], crs_wkt: str, rows: Sequence[Dict[str, Any]],
                fields: Sequence[Tuple[str, str]], layer: str, geometry: str = "polygon") -> None:
    """One layer in a new vector file, by ``core.geo.write_features``."""
    from osgeo import ogr

    types = {"int": ogr.OFTInteger, "str": ogr.OFTString, "real": ogr.OFTReal}
    write_features(path, geoms, crs_wkt, rows, [ogr.FieldDefn(n, types[k]) for n, k in fields], layer, geometry)


def split_parameters(**overrides) -> SplitParameters:
    """The split's parameters (``core.parameters.SplitParameters``) with ``overrides``."""
    import dataclasses

    if not overrides:
        return SplitParameters()
    known = {f.name for f in dataclasses.fields(SplitParameters)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InputError(f"Unknown split parameter(s) {unknown}; known: {sorted(known)}.")
    return SplitParameters(**overrides)
