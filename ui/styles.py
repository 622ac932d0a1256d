"""Layer styles from a model's class table, applied when Processing loads an output."""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsColorRampShader,
    QgsFillSymbol,
    QgsLineSymbol,
    QgsMapLayer,
    QgsMapLayerType,
    QgsPalettedRasterRenderer,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterShader,
    QgsRendererCategory,
    QgsSingleBandPseudoColorRenderer,
    QgsSingleSymbolRenderer,
)
from qgis.PyQt.QtGui import QColor

from ..core.contract import ClassInfo


def class_raster_renderer(layer, classes: Sequence[ClassInfo]) -> QgsPalettedRasterRenderer:
    """Paletted renderer: one colour per class value (background transparent)."""
    entries = [QgsPalettedRasterRenderer.Class(c.value, QColor(c.color), c.name) for c in classes]
    return QgsPalettedRasterRenderer(layer.dataProvider(), 1, entries)


def probability_renderer(layer, band: int, color: str) -> QgsSingleBandPseudoColorRenderer:
    """Pseudocolour 0–1 ramp from transparent-white to the class colour on ``band``."""
    end = QColor(color)
    start = QColor(255, 255, 255, 0)
    ramp = QgsColorRampShader(0.0, 1.0)
    ramp.setColorRampType(QgsColorRampShader.Interpolated)
    ramp.setColorRampItemList(
        [QgsColorRampShader.ColorRampItem(0.0, start, "0"), QgsColorRampShader.ColorRampItem(1.0, end, "1")]
    )
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(0.0)
    renderer.setClassificationMax(1.0)
    return renderer


def _outline_symbol(color: str, width: str = "0.4", style: str = "solid") -> QgsFillSymbol:
    fill = QColor(color)
    fill.setAlpha(100)
    return QgsFillSymbol.createSimple({"color": fill.name(QColor.HexArgb), "outline_color": QColor(color).name(),
                                       "outline_width": width, "outline_style": style})


def class_vector_renderer(field: str, classes: Sequence[ClassInfo]) -> QgsCategorizedSymbolRenderer:
    """Categorized outline style: class colour at 40 % fill, solid outline, and a catch-all
    category (dashed magenta) so polygons drawn by hand before their class is set still show."""
    categories = [QgsRendererCategory(c.value, _outline_symbol(c.color), c.name) for c in classes]
    categories.append(QgsRendererCategory("", _outline_symbol("#e7298a", "0.6", "dash"), "other / not classified"))
    return QgsCategorizedSymbolRenderer(field, categories)


# Display precision of GlacierSeg's numeric fields (decimals), applied through the Range widget
FIELD_DECIMALS = {"area_km2": 3, "perimeter_m": 0, "length_m": 0, "zmin_m": 0, "zmax_m": 0, "zmed_m": 0,
                  "zmean_m": 0, "slope_deg": 1, "aspect_deg": 0, "cenlon": 5, "cenlat": 5, "termlon": 5,
                  "termlat": 5, "iou": 3}


def field_precision(layer) -> None:
    """Show GlacierSeg's float fields with sensible decimals (a GeoPackage real has none set)."""
    from qgis.core import QgsEditorWidgetSetup

    for name, decimals in FIELD_DECIMALS.items():
        index = layer.fields().indexOf(name)
        if index >= 0 and layer.fields().at(index).isNumeric():
            layer.setEditorWidgetSetup(index, QgsEditorWidgetSetup("Range", {
                "Precision": decimals, "Step": 10 ** -decimals, "Style": "SpinBox", "AllowNull": True,
                "Min": -1e12, "Max": 1e12}))


def class_raster_beneath_outlines(layer) -> None:
    """A class (or index) raster whose result the outlines show: half transparent, hidden until wanted."""
    layer.setOpacity(0.5)
    _tree_node(layer, lambda node: node.setItemVisibilityChecked(False))


def _tree_node(layer, action) -> None:
    from qgis.core import QgsProject

    node = QgsProject.instance().layerTreeRoot().findLayer(layer.id())
    if node is not None:
        action(node)


_RUN_LAYERS = {}  # processing context id -> (time, ids of the layers of that run loaded so far)


def _rank(layer) -> int:
    from qgis.core import QgsWkbTypes

    if layer.type() != QgsMapLayerType.VectorLayer:
        return 2
    return 1 if layer.geometryType() == QgsWkbTypes.PolygonGeometry else 0


def stack_run_outputs(context, layer) -> None:
    """Order the loaded outputs of one run in the layer tree: lines (ice divides) over polygons
    (outlines, glaciers) over rasters, as one block where QGIS put the first of them, so a run's
    outlines are never hidden by its own rasters; line layers right below that block (the ice
    divides a later run's glaciers were inserted over) are lifted above it."""
    import time

    from qgis.core import QgsLayerTreeLayer, QgsProject

    now = time.monotonic()
    for key in [k for k, (t, _) in _RUN_LAYERS.items() if now - t > 120]:
        del _RUN_LAYERS[key]
    _, ids = _RUN_LAYERS.setdefault(id(context), (now, []))
    ids.append(layer.id())
    root = QgsProject.instance().layerTreeRoot()
    nodes = [n for n in (root.findLayer(i) for i in ids) if n is not None and n.layer() is not None]
    parent = nodes[0].parent() if nodes else None
    nodes = [n for n in nodes if n.parent() is parent]
    if not nodes:
        return
    children = parent.children()
    ordered = sorted(nodes, key=lambda n: (_rank(n.layer()), children.index(n)))
    top = min(children.index(n) for n in nodes)
    # lines right below the block (e.g. the ice divides of the run that made these glaciers) go above it
    below = max(children.index(n) for n in nodes) + 1
    while (below < len(children) and isinstance(children[below], QgsLayerTreeLayer)
           and children[below].layer() is not None and _rank(children[below].layer()) < _rank(ordered[0].layer())):
        nodes.append(children[below])
        ordered.insert(0, children[below])
        below += 1
    if [children.index(n) for n in ordered] == list(range(top, top + len(ordered))):
        return
    for offset, node in enumerate(ordered):  # clones in first: a layer whose last node goes leaves the project
        parent.insertChildNode(top + offset, node.clone())
    for node in nodes:
        parent.removeChildNode(node)


class ApplyStyle(QgsProcessingLayerPostProcessorInterface):
    """Post-processor that calls ``styler(layer)`` once Processing has loaded the layer.

    Processing does not keep the Python object alive: ``style_on_load`` holds it in
    ``_PENDING`` until it has run, then it lets go of itself."""

    def __init__(self, styler: Callable[[QgsMapLayer], None], layer_id: str = ""):
        super().__init__()
        self._styler = styler
        self._layer_id = layer_id

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        try:
            if layer is not None and layer.isValid():
                self._styler(layer)
                if layer.type() == QgsMapLayerType.VectorLayer:
                    field_precision(layer)
                stack_run_outputs(context, layer)
                layer.triggerRepaint()
        finally:
            if _PENDING.get(self._layer_id) is self:
                del _PENDING[self._layer_id]


_PENDING: Dict[str, ApplyStyle] = {}  # output (layer id) -> its post-processor, until Processing has run it


def pending_styles() -> List[str]:
    """The outputs whose style is registered but not applied yet (layers still to load)."""
    return list(_PENDING)


def style_on_load(context, layer_id: str, styler: Callable[[QgsMapLayer], None], source_name: str = "") -> None:
    """Have Processing style output ``layer_id`` with ``styler`` when it loads it; with
    ``source_name`` (the input layer's name) the layer is named "<output> — <source_name>", so
    the layers of batch rows and reruns can be told apart."""
    if context.willLoadLayerOnCompletion(layer_id):
        post = ApplyStyle(styler, layer_id)
        _PENDING[layer_id] = post  # a rerun to the same output replaces the older, never-run one
        details = context.layerToLoadOnCompletionDetails(layer_id)
        source_name = source_name.split(" — ")[-1]  # the original input's name, not a chain of outputs
        if source_name and source_name not in details.name:
            details.name = f"{details.name} — {source_name}"
        details.setPostProcessor(post)


def style_glaciers(layer) -> None:
    """Light blue glaciers with a thin outline, so the red ice divides above them stay visible."""
    layer.setRenderer(QgsSingleSymbolRenderer(QgsFillSymbol.createSimple(
        {"color": "166,206,227,90", "outline_color": "31,120,180", "outline_width": "0.26"})))


def style_footprints(layer) -> None:
    """Scene footprints as dashed outlines without fill, so the scenes and glaciers beneath show."""
    layer.setRenderer(QgsSingleSymbolRenderer(QgsFillSymbol.createSimple(
        {"color": "0,0,0,0", "outline_color": "60,60,60", "outline_width": "0.4", "outline_style": "dash"})))


def style_divides(layer) -> None:
    """Draw ice divides as thin red lines."""
    layer.setRenderer(
        QgsSingleSymbolRenderer(QgsLineSymbol.createSimple({"line_color": "227,26,28", "line_width": "0.6"}))
    )
