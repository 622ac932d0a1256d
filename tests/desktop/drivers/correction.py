"""The manual-correction step in the desktop: attributes, "Prepare outlines for correction" from the
plugin menu, a new polygon and a moved shared vertex through the editing API, save, then
inventory_attributes in update-in-place mode."""
from qgis_driver import run_job


def attributes(layer):
    out = {}
    for f in layer.getFeatures():
        out[str(f.id())] = {name: (None if f[name] is None or str(f[name]) == "NULL" else
                                   (round(f[name], 9) if isinstance(f[name], float) else str(f[name])))
                            for name in layer.fields().names()}
    return out


def main(job):
    import processing
    from qgis.core import (
        QgsFeatureRequest,
        QgsGeometry,
        QgsPointXY,
        QgsProject,
        QgsRasterLayer,
        QgsRenderContext,
        QgsVectorLayer,
        QgsVectorLayerUtils,
    )
    from qgis.PyQt.QtWidgets import QAction

    inputs = job.inputs
    job.step = "inventory attributes of the outlines"
    dem = QgsRasterLayer(inputs["dem"], "DEM")
    QgsProject.instance().addMapLayer(dem)
    processing.run("glacierseg:inventory_attributes", {
        "INPUT": inputs["outlines"], "DEM": inputs["dem"], "CLASSES": "*", "OUTPUT": inputs["glaciers"]})
    layer = QgsVectorLayer(inputs["glaciers"], "Glaciers to correct")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    job.iface.setActiveLayer(layer)
    job.iface.mapCanvas().setExtent(layer.extent())
    yield job.canvas_idle()

    job.step = "Prepare outlines for correction (plugin menu)"
    action = job.iface.mainWindow().findChild(QAction, "glacierseg_prepare_correction")
    job.result["menu_action"] = action.text() if action else None
    action.trigger()
    yield 800
    from qgis.utils import plugins

    dlg = plugins["glacierseg"].dialogs["prepare_correction"]
    dlg.resize(700, 600)
    job.screenshot(dlg, "dialog_prepare_correction_from_menu")
    yield job.run_dialog(dlg, 60)
    assert dlg.results(), job.dialog_log(dlg)
    dlg.close()
    project = QgsProject.instance()
    job.result["topological_editing"] = project.topologicalEditing()
    job.result["snapping"] = project.snappingConfig().enabled()
    fields = layer.fields()
    job.result["widgets"] = {n: layer.editorWidgetSetup(fields.indexOf(n)).type()
                             for n in ("class_value", "class_name", "review_status", "area_km2")}

    job.step = "find a vertex shared by two polygons"
    feats = {f.id(): f for f in layer.getFeatures()}
    shared = None
    for fid, f in feats.items():
        for v in f.geometry().vertices():
            others = [g for g in feats if g != fid and any(
                w.x() == v.x() and w.y() == v.y() for w in feats[g].geometry().vertices())]
            if others:
                shared = (v.x(), v.y(), [fid] + others)
                break
        if shared:
            break
    assert shared, "no shared vertex between outlines"
    x, y, owners = shared
    job.result["moved_owners"] = [str(i) for i in owners]

    job.step = "edit: move the shared vertex in every polygon that has it (topological editing)"
    layer.startEditing()
    dx = 15.0
    for fid in owners:
        geom = feats[fid].geometry()
        for index, v in enumerate(geom.vertices()):
            if v.x() == x and v.y() == y:
                assert layer.moveVertex(x + dx, y + dx, fid, index)

    job.step = "edit: draw a new polygon in an empty place"
    ext = layer.extent()
    size = 400.0
    new_geom = None
    for i in range(40):
        cx = ext.xMinimum() + size + (i % 8) * (ext.width() - 2 * size) / 7
        cy = ext.yMinimum() + size + (i // 8) * (ext.height() - 2 * size) / 4
        candidate = QgsGeometry.fromPolygonXY([[QgsPointXY(cx, cy), QgsPointXY(cx + size, cy),
                                                QgsPointXY(cx + size, cy + size), QgsPointXY(cx, cy + size),
                                                QgsPointXY(cx, cy)]])
        if not any(f.geometry().intersects(candidate) for f in layer.getFeatures()):
            new_geom = candidate
            break
    assert new_geom is not None
    feature = QgsVectorLayerUtils.createFeature(layer, new_geom, {}, layer.createExpressionContext())
    assert layer.addFeature(feature)
    new_fid = feature.id()
    yield 200
    job.step = "new polygon renders before its class is set (catch-all category)"
    drawn = next(layer.getFeatures(QgsFeatureRequest(new_fid)))
    context = QgsRenderContext()
    renderer = layer.renderer().clone()
    renderer.startRender(context, layer.fields())
    job.result["new_symbols"] = len(renderer.symbolsForFeature(drawn, context))
    renderer.stopRender(context)
    job.iface.mapCanvas().setExtent(new_geom.buffer(1500, 4).boundingBox())
    yield job.canvas_idle()
    job.screenshot(job.iface.mapCanvas(), "canvas_new_polygon_unclassified")
    job.result["new_area_km2"] = drawn["area_km2"]
    job.result["new_perimeter_m"] = drawn["perimeter_m"]
    job.result["new_true_area_km2"] = new_geom.area() / 1e6
    job.result["new_review_status"] = str(drawn["review_status"])

    job.step = "set the class of the new polygon through its value map"
    layer.changeAttributeValue(new_fid, layer.fields().indexOf("class_value"), 1)
    drawn = next(layer.getFeatures(QgsFeatureRequest(new_fid)))
    job.result["new_class_name"] = str(drawn["class_name"])
    job.step = "save"
    assert layer.commitChanges(), layer.commitErrors()
    new_fid = max(f.id() for f in layer.getFeatures())
    job.result["new_fid"] = str(new_fid)
    geoms = {f.id(): f.geometry() for f in layer.getFeatures()}
    job.result["valid"] = {str(fid): g.isGeosValid() for fid, g in geoms.items()}
    a, b = owners[0], owners[1]
    job.result["neighbour_overlap_m2"] = geoms[a].intersection(geoms[b]).area()
    job.result["neighbours_touch"] = geoms[a].touches(geoms[b]) or geoms[a].intersects(geoms[b])
    job.result["moved_vertex_in_both"] = all(
        any(abs(v.x() - (x + dx)) < 1e-6 and abs(v.y() - (y + dx)) < 1e-6 for v in geoms[fid].vertices())
        for fid in owners)
    job.result["moved_areas"] = {str(fid): (next(layer.getFeatures(QgsFeatureRequest(fid)))["area_km2"],
                                            geoms[fid].area() / 1e6) for fid in owners}
    job.result["review_after_edit"] = {str(f.id()): str(f["review_status"]) for f in layer.getFeatures()}
    middle = attributes(layer)

    job.step = "inventory_attributes, update in place"
    out = processing.run("glacierseg:inventory_attributes", {
        "INPUT": layer, "DEM": dem, "UPDATE_IN_PLACE": True, "DEM_SOURCE": "sample DEM"})
    job.result["n_updated"] = out["N_UPDATED"]
    layer.reload()
    job.result["middle"], job.result["after"] = middle, attributes(layer)
    job.iface.mapCanvas().setExtent(layer.extent())
    yield job.canvas_idle()
    job.screenshot(name="canvas_after_correction")


run_job(main)
