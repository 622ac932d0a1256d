"""Inventory-style glacier IDs: a prefix and a running number (``HEF-00012``), numbered from west to
east (then south to north) by each glacier's representative point, so a rerun on the same input
gives the same IDs (as RGI numbers glaciers within a region, RGI Consortium 2023, user guide
section "RGI IDs")."""
from __future__ import annotations

import re
from typing import Iterable, List, Optional, Sequence, Tuple

ID_FIELD = "glacier_id"
DIGITS = 5


def glacier_id(prefix: str, number: int) -> str:
    """``prefix`` and ``number`` padded to ``DIGITS`` digits (``HEF-00012``)."""
    return f"{prefix}{number:0{DIGITS}d}"


def numbering_order(points: Sequence[Tuple[float, float]]) -> List[int]:
    """Indices of ``points`` (lon, lat of representative points) in ID order: west to east, ties
    south to north (rounded to 1e-6°, so the order does not depend on floating-point noise)."""
    return sorted(range(len(points)), key=lambda i: (round(points[i][0], 6), round(points[i][1], 6), i))


def next_number(existing: Iterable[Optional[str]], prefix: str) -> int:
    """The number after the highest ``prefix``+number among ``existing`` IDs (1 when none)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)$")
    numbers = [int(m.group(1)) for m in (pattern.match(str(e)) for e in existing if e) if m]
    return max(numbers, default=0) + 1


def assign_ids(path: str, prefix: str, layer: Optional[str] = None) -> int:
    """Write ``glacier_id`` (added when missing) to every feature of the vector file ``path``, in
    ``numbering_order``; returns the number of glaciers. One transaction: all IDs or none."""
    from osgeo import ogr

    from .geo import WGS84, open_layer, read_features, transform_geom

    feats = read_features(path, layer, polygons=False)  # the outlines as they are
    points = []
    for geom in feats.geoms:
        p = transform_geom(geom.representative_point(), feats.crs_wkt, WGS84) \
            if geom is not None and not geom.is_empty else None
        points.append((p.x, p.y) if p is not None else (float("inf"), float("inf")))
    with open_layer(path, layer, update=True) as lyr:
        if lyr.GetLayerDefn().GetFieldIndex(ID_FIELD) < 0:
            lyr.CreateField(ogr.FieldDefn(ID_FIELD, ogr.OFTString))
        lyr.StartTransaction()
        for number, index in enumerate(numbering_order(points), start=1):
            feat = lyr.GetFeature(feats.fids[index])
            feat.SetField(ID_FIELD, glacier_id(prefix, number))
            lyr.SetFeature(feat)
        lyr.CommitTransaction()
    return len(feats.fids)


def id_prefix(existing: Iterable[Optional[str]], default: str = "G-") -> str:
    """The prefix of existing IDs (their text before the trailing number), else ``default``."""
    for e in existing:
        m = re.match(r"(.*?)(\d+)$", str(e)) if e else None
        if m:
            return m.group(1)
    return default
