"""Layer styles from a model's class table, applied when Processing loads an output."""
from __future__ import annotations

from typing import Callable, Sequence

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsColorRampShader,
    QgsFillSymbol,
    QgsMapLayer,
    QgsPalettedRasterRenderer,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterShader,
    QgsRendererCategory,
    QgsSingleBandPseudoColorRenderer,
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


def class_vector_renderer(field: str, classes: Sequence[ClassInfo]) -> QgsCategorizedSymbolRenderer:
    """Categorized outline style: class colour at 40 % fill, solid outline."""
    categories = []
    for c in classes:
        color = QColor(c.color)
        fill = QColor(color)
        fill.setAlpha(100)
        symbol = QgsFillSymbol.createSimple(
            {"color": fill.name(QColor.HexArgb), "outline_color": color.name(), "outline_width": "0.4"}
        )
        categories.append(QgsRendererCategory(c.value, symbol, c.name))
    return QgsCategorizedSymbolRenderer(field, categories)


class ApplyStyle(QgsProcessingLayerPostProcessorInterface):
    """Post-processor that calls ``styler(layer)`` once Processing has loaded the layer.

    Keep a reference to the instance (Processing does not own Python objects)."""

    def __init__(self, styler: Callable[[QgsMapLayer], None]):
        super().__init__()
        self._styler = styler

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        if layer is not None and layer.isValid():
            self._styler(layer)
            layer.triggerRepaint()


_KEEP_ALIVE = []


def style_on_load(context, layer_id: str, styler: Callable[[QgsMapLayer], None]) -> None:
    """Have Processing style output ``layer_id`` with ``styler`` when it loads it."""
    if context.willLoadLayerOnCompletion(layer_id):
        post = ApplyStyle(styler)
        _KEEP_ALIVE.append(post)
        context.layerToLoadOnCompletionDetails(layer_id).setPostProcessor(post)
