"""What every GlacierSeg algorithm shares: group, icon, dependency check, error mapping."""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

from qgis.core import QgsProcessingAlgorithm, QgsProcessingException
from qgis.PyQt.QtGui import QIcon

from ..core.deps import require
from ..core.errors import CancelledError, GlacierSegError
from ..core.progress import FeedbackProgress

ICON_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "icons", "glacierseg.svg")


def raster_path(layer) -> str:
    """File path of a GDAL raster layer, or a clear error for other sources."""
    if layer is None:
        raise QgsProcessingException("No input raster layer was given.")
    path = layer.source().split("|")[0]
    if layer.providerType() != "gdal" or not os.path.isfile(path):
        raise QgsProcessingException(
            f"Layer '{layer.name()}' is not a raster file (provider {layer.providerType()}). "
            "Save it as a GeoTIFF first (right-click › Export › Save As…)."
        )
    return path


def geotiff_output(path: str, what: str) -> str:
    """A raster destination path, refused unless it is a GeoTIFF (what the core writes)."""
    if os.path.splitext(path)[1].lower() not in (".tif", ".tiff"):
        raise QgsProcessingException(f"The {what} output must be a GeoTIFF (.tif); got {path!r}.")
    return path


def vector_source(alg, parameters, name, context, feedback) -> Tuple[Optional[str], Optional[str]]:
    """(path, layer name) of a vector source OGR can read — exported to a GeoPackage when it is
    not a file (memory layers, selections) — or (None, None) for an empty optional parameter."""
    if not parameters.get(name):
        return None, None
    return alg.parameterAsCompatibleSourceLayerPathAndLayerName(
        parameters, name, context, ["gpkg", "shp", "geojson"], "gpkg", feedback)


def vector_source_uri(alg, parameters, name, context, feedback) -> Optional[str]:
    """``vector_source`` as one OGR string ('file|layername=x'), or None."""
    path, layer = vector_source(alg, parameters, name, context, feedback)
    if path is None:
        return None
    return f"{path}|layername={layer}" if layer else path


def optional_number(alg, parameters, name, context) -> Optional[float]:
    """The parameter's value, or None when it was left empty."""
    value = parameters.get(name)
    return None if value is None or value == "" else alg.parameterAsDouble(parameters, name, context)


class GlacierSegAlgorithm(QgsProcessingAlgorithm):
    """Base class: subclasses define ``NAME``, ``DISPLAY_NAME``, ``GROUP``, ``HELP``,
    ``REQUIRES`` (import names), ``initAlgorithm`` and ``process`` (one core call).
    (Not ``run``: that is QgsProcessingAlgorithm's own public method.)"""

    NAME = ""
    DISPLAY_NAME = ""
    GROUP = "Segmentation"
    HELP = ""
    REQUIRES: Tuple[str, ...] = ("numpy", "rasterio")

    def name(self) -> str:
        return self.NAME

    def displayName(self) -> str:  # noqa: N802
        return self.DISPLAY_NAME

    def group(self) -> str:
        return self.GROUP

    def groupId(self) -> str:  # noqa: N802
        return self.GROUP.lower().replace(" ", "_")

    def shortHelpString(self) -> str:  # noqa: N802
        return self.HELP

    def icon(self) -> QIcon:
        return QIcon(ICON_PATH)

    def createInstance(self):  # noqa: N802
        return type(self)()

    def processAlgorithm(self, parameters, context, feedback) -> Dict[str, Any]:  # noqa: N802
        try:
            require(*self.REQUIRES)
            return self.process(parameters, context, feedback, FeedbackProgress(feedback))
        except CancelledError as exc:
            raise QgsProcessingException(f"{exc} No output was written.") from None
        except GlacierSegError as exc:
            raise QgsProcessingException(str(exc)) from None

    def process(self, parameters, context, feedback, progress) -> Dict[str, Any]:
        raise NotImplementedError


def docs_url(page: str) -> str:
    """file:// URL of a page shipped in the plugin's docs/ folder (an algorithm's helpUrl)."""
    from qgis.PyQt.QtCore import QUrl

    return QUrl.fromLocalFile(os.path.join(os.path.dirname(os.path.dirname(__file__)), "docs", page)).toString()
