"""Every GlacierSeg dialog in the desktop: open it with rasters and vectors in the project, set its
values through its widgets, screenshot it, run it through the dialog's own run path (all but
train, whose torch import must stay out of the QGIS process) and record the layers it added."""
from qgis_driver import run_job


def layer_tree(job):
    from qgis.core import QgsProject

    out = []
    for node in QgsProject.instance().layerTreeRoot().findLayers():
        layer = node.layer()
        info = {"name": layer.name(), "kind": "vector" if layer.type() == 0 else "raster",
                "visible": node.isVisible(), "renderer": type(layer.renderer()).__name__ if layer.renderer() else None,
                "opacity": layer.opacity() if layer.type() == 1 else None}
        if layer.type() == 0:
            info["source"] = layer.source().split("|")[0]
            info["geometry"] = layer.geometryType()
            info["widgets"] = {f.name(): layer.editorWidgetSetup(i).type() for i, f in enumerate(layer.fields())}
            info["defaults"] = {f.name(): layer.defaultValueDefinition(i).expression()
                                for i, f in enumerate(layer.fields()) if layer.defaultValueDefinition(i).isValid()}
        if type(layer.renderer()).__name__ == "QgsSingleBandPseudoColorRenderer":
            info["band"] = layer.renderer().band()
        if type(layer.renderer()).__name__ == "QgsCategorizedSymbolRenderer":
            info["categories"] = [str(c.value()) for c in layer.renderer().categories()]
        out.append(info)
    return out


def main(job):
    from qgis.core import QgsProject, QgsRasterLayer, QgsVectorLayer
    from qgis.gui import QgsRasterBandComboBox

    inputs = job.inputs
    job.step = "load layers"
    image = QgsRasterLayer(inputs["image"], "S2A_sample_scene")
    dem = QgsRasterLayer(inputs["dem"], "DEM")
    reference = QgsVectorLayer(inputs["reference"], "reference outlines")
    for lyr in (image, dem, reference):
        assert lyr.isValid(), lyr.source()
    from qgis.core import QgsFillSymbol, QgsSingleSymbolRenderer

    reference.setRenderer(QgsSingleSymbolRenderer(QgsFillSymbol.createSimple(
        {"color": "0,0,0,0", "outline_color": "40,40,40", "outline_width": "0.3", "outline_style": "dot"})))
    QgsProject.instance().addMapLayers([dem, image, reference])
    root = QgsProject.instance().layerTreeRoot()
    root.findLayer(dem.id()).setItemVisibilityChecked(False)
    for lyr in (image, dem):  # the usual stack: the image, below it the DEM (off)
        node = root.findLayer(lyr.id())
        root.insertChildNode(len(root.children()), node.clone())
        root.removeChildNode(node)
    job.iface.setActiveLayer(image)  # a raster active: what aborted evaluate's dialog
    job.iface.mapCanvas().setExtent(image.extent())
    yield job.canvas_idle()
    job.result["dialogs"] = {}

    open_dialog, setv, log_text = job.open_dialog, job.set_value, job.dialog_log

    def run(dlg, alg_id, timeout=240):
        job.step = f"run {alg_id}"
        return job.run_dialog(dlg, timeout)

    def record(dlg, alg_id, ran=True):
        job.result["dialogs"][alg_id] = {"results": {k: str(v) for k, v in (dlg.results() or {}).items()},
                                         "log_tail": log_text(dlg)[-1500:] if ran else ""}

    # --- segment: band combos per model band, run
    alg = "glacierseg:segment"
    job.step = f"open {alg}"
    dlg = open_dialog(alg)
    setv(dlg, "INPUT", image.id())
    setv(dlg, "MODEL", inputs["model"])
    yield 500
    combos = dlg.findChildren(QgsRasterBandComboBox)
    job.result["segment_band_combos"] = [c.currentBand() for c in combos]
    job.result["segment_band_labels"] = [c.parent().layout().labelForField(c).text() for c in combos]
    if combos:  # choose the bands through the combos (the model's order)
        for combo, band in zip(combos, inputs["model_bands"]):
            combo.setBand(band)
    job.result["segment_band_value"] = dlg.mainWidget().wrappers["BAND_MAPPING"].parameterValue()
    job.screenshot(dlg, "dialog_segment")
    yield run(dlg, alg)
    record(dlg, alg)
    dlg.close()
    yield job.canvas_idle()
    job.screenshot(name="canvas_after_segment")
    outlines = next(lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.name().startswith("Outlines"))

    # --- vectorize the class raster
    alg = "glacierseg:vectorize"
    job.step = f"open {alg}"
    classes_layer = next(lyr for lyr in QgsProject.instance().mapLayers().values()
                         if lyr.name().startswith("Classes"))
    dlg = open_dialog(alg)
    setv(dlg, "INPUT", classes_layer.id())
    setv(dlg, "CLASS_TABLE", inputs["model"])
    yield 300
    job.screenshot(dlg, "dialog_vectorize")
    yield run(dlg, alg)
    record(dlg, alg)
    dlg.close()

    # --- band ratio and lakes (band combos by sensor)
    for alg in ("glacierseg:map_glaciers_band_ratio", "glacierseg:map_lakes"):
        job.step = f"open {alg}"
        dlg = open_dialog(alg)
        setv(dlg, "INPUT", image.id())
        setv(dlg, "DEM", dem.id())
        yield 300
        job.screenshot(dlg, "dialog_" + alg.split(":")[1])
        yield run(dlg, alg)
        record(dlg, alg)
        dlg.close()

    # --- evaluate: a raster as prediction (aborted QGIS 3.22 before), then polygons
    alg = "glacierseg:evaluate"
    job.step = f"open {alg} with a raster prediction"
    dlg = open_dialog(alg)
    setv(dlg, "PREDICTION", classes_layer.id())
    yield 300
    setv(dlg, "REFERENCE", image.id())
    yield 300
    setv(dlg, "REFERENCE", reference.id())
    yield 300
    setv(dlg, "PREDICTION", outlines.id())
    yield 300
    setv(dlg, "PREDICTION", classes_layer.id())
    yield 300
    setv(dlg, "REFERENCE_FIELD", "class_value")
    field_layer = dlg.mainWidget().wrappers["REFERENCE_FIELD"].widget.layer()
    job.result["evaluate_reference_fields"] = field_layer.fields().names()
    job.screenshot(dlg, "dialog_evaluate")
    yield run(dlg, alg)
    record(dlg, alg)
    dlg.close()

    # --- split the segment outlines (glacier classes by default), then attributes
    alg = "glacierseg:split_glaciers"
    job.step = f"open {alg}"
    dlg = open_dialog(alg)
    setv(dlg, "INPUT", dem.id())  # a raster id in the feature source: must not abort QGIS
    yield 300
    setv(dlg, "INPUT", outlines.id())
    setv(dlg, "DEM", dem.id())
    setv(dlg, "ID_PREFIX", "HEF-")
    yield 500
    filt = dlg.mainWidget().wrappers["CLASSES"].widget
    job.result["split_class_items"] = {filt.item(i).text(): int(filt.item(i).checkState()) for i in range(filt.count())}
    job.screenshot(dlg, "dialog_split_glaciers")
    yield run(dlg, alg, timeout=400)
    record(dlg, alg)
    dlg.close()
    glaciers = next((lyr for lyr in QgsProject.instance().mapLayers().values()
                     if lyr.name().startswith("Glaciers")), None)
    job.result["glacier_ids"] = sorted(str(f["glacier_id"]) for f in glaciers.getFeatures()) if glaciers else []

    alg = "glacierseg:inventory_attributes"
    job.step = f"open {alg}"
    dlg = open_dialog(alg)
    setv(dlg, "INPUT", (glaciers or outlines).id())
    setv(dlg, "DEM", dem.id())
    from qgis.PyQt.QtCore import QDate

    setv(dlg, "SRC_DATE", QDate(2021, 8, 24))
    job.result["inventory_date_value"] = str(dlg.mainWidget().wrappers["SRC_DATE"].parameterValue())
    yield 300
    job.screenshot(dlg, "dialog_inventory_attributes")
    yield run(dlg, alg)
    record(dlg, alg)
    dlg.close()

    # --- train: opened and filled (not run here)
    alg = "glacierseg:train"
    job.step = f"open {alg}"
    dlg = open_dialog(alg)
    setv(dlg, "INPUT", [image.id()])
    setv(dlg, "LABELS", image.id())  # a raster id in the label source: must not abort QGIS
    yield 300
    setv(dlg, "LABELS", reference.id())
    yield 300
    setv(dlg, "CLASS_FIELD", "class_value")
    setv(dlg, "NETWORK", "attention_deeplabv3plus")
    setv(dlg, "LOSS", "focal_iou")
    params = dlg.mainWidget().createProcessingParameters()
    job.result["train_parameters"] = {k: str(v) for k, v in params.items() if k in ("NETWORK", "LOSS", "CLASS_FIELD")}
    job.screenshot(dlg, "dialog_train")
    # a tiny run through the dialog: one epoch of eight 64 px tiles of a small U-Net
    for name, value in (("NETWORK", "unet"), ("LOSS", "ce_dice"), ("NETWORK_OPTIONS", '{"widths": [8, 16, 32]}'),
                        ("EPOCHS", 1), ("TILE_SIZE", 64), ("TILES_PER_EPOCH", 8), ("CELL_SIZE", 128),
                        ("DEVICE", 1), ("OUTPUT_MODEL", inputs["trained_model"]),
                        ("OUTPUT_REPORT", inputs["trained_model"] + ".json")):
        setv(dlg, name, value)
    yield run(dlg, alg, timeout=240)
    record(dlg, alg)
    dlg.close()

    job.step = "segment as a batch: band mapping is a text field there"
    from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog
    from qgis.core import QgsApplication
    from qgis.PyQt.QtWidgets import QLineEdit

    batch = BatchAlgorithmDialog(QgsApplication.processingRegistry().algorithmById("glacierseg:segment").create())
    batch.show()
    yield 500
    job.result["batch_band_mapping_fields"] = [e.placeholderText() for e in batch.findChildren(QLineEdit)
                                               if "3,8,11" in e.placeholderText()]
    job.screenshot(batch, "dialog_segment_batch")
    batch.close()

    job.step = "segment in the modeler: band mapping is a text field there too"
    from processing.modeler.ModelerParametersDialog import ModelerParametersDialog
    from qgis.core import QgsProcessingModelAlgorithm

    modeler = ModelerParametersDialog(QgsApplication.processingRegistry().algorithmById("glacierseg:segment"),
                                      QgsProcessingModelAlgorithm("glaciers", "test"))
    modeler.show()
    yield 400
    edits = [e for e in modeler.findChildren(QLineEdit) if "3,8,11" in e.placeholderText()]
    job.result["modeler_band_mapping_fields"] = len(edits)
    if edits:
        edits[0].setText("B03,B08,B11")
    child = modeler.createAlgorithm()
    job.result["modeler_band_mapping"] = [s.staticValue() for s in child.parameterSources()["BAND_MAPPING"]]
    job.screenshot(modeler, "dialog_segment_modeler")
    modeler.close()

    alg = "glacierseg:prepare_correction"
    job.step = f"open {alg}"
    dlg = open_dialog(alg)
    setv(dlg, "INPUT", outlines.id())
    yield 300
    job.screenshot(dlg, "dialog_prepare_correction")
    dlg.close()

    job.step = "final canvas"
    job.iface.mapCanvas().setExtent(image.extent())
    yield job.canvas_idle()
    job.result["layers"] = layer_tree(job)
    job.screenshot(name="canvas_final")


run_job(main)
