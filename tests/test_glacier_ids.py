"""Inventory-style glacier IDs (core/glacier_ids.py)."""
import shapely
from osgeo import ogr

from glacierseg.core.glacier_ids import assign_ids, id_prefix, next_number, numbering_order

from .helpers import write_vector


def _ids(path):
    ds = ogr.Open(path)
    return {f.GetGeometryRef().Centroid().GetX(): f.GetField("glacier_id") for f in ds.GetLayer(0)}


def test_ids_run_west_to_east_and_do_not_depend_on_feature_order(tmp_path):
    boxes = [shapely.box(630000 + 2000 * i, 5180000, 630000 + 2000 * i + 1000, 5181000) for i in range(4)]
    forward = write_vector(tmp_path / "a.gpkg", boxes)
    backward = write_vector(tmp_path / "b.gpkg", boxes[::-1])
    assert assign_ids(forward, "HEF-") == 4 and assign_ids(backward, "HEF-") == 4
    assert _ids(forward) == _ids(backward)
    assert [v for _, v in sorted(_ids(forward).items())] == ["HEF-00001", "HEF-00002", "HEF-00003", "HEF-00004"]
    assign_ids(forward, "HEF-")  # a rerun gives the same IDs
    assert _ids(forward) == _ids(backward)


def test_numbering_helpers():
    assert numbering_order([(11.2, 46.8), (10.9, 46.7), (10.9, 46.6)]) == [2, 1, 0]
    assert next_number(["G-00003", None, "G-00010", "X-00099"], "G-") == 11
    assert id_prefix([None, "HEF-00012"]) == "HEF-" and id_prefix([]) == "G-"
