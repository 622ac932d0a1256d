"""What every GlacierSeg algorithm shares: group, icon, dependency check, output path checks, error mapping."""
from __future__ import annotations

import os
import re
from typing import Any, Dict, Optional, Tuple

from qgis.core import (
    QgsApplication,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingDestinationParameter,
    QgsProcessingException,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
    QgsProcessingParameterVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtGui import QIcon

from ..core.deps import PACKAGES_DIR, require
from ..core.errors import CancelledError, GlacierSegError
from ..core.io import check_output_paths
from ..core.progress import FeedbackProgress
from ..core.store import ModelStore

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ICON_PATH = os.path.join(PLUGIN_DIR, "icons", "glacierseg.svg")
BUNDLED_MODELS = os.path.join(PLUGIN_DIR, "bundled_models")  # filled by scripts/package.py
# Toolbox groups (ids are the lower-case names with underscores)
MAPPING, INVENTORY, MODELS, EVALUATION = "Mapping", "Glacier inventory", "Models and training", "Evaluation"


def glacierseg_home() -> str:
    """GlacierSeg's folder in the active QGIS profile (``GLACIERSEG_HOME`` overrides it): its
    Python packages (``python/``) and installed models (``models/``)."""
    return os.environ.get("GLACIERSEG_HOME") or os.path.join(QgsApplication.qgisSettingsDirPath(), "glacierseg")


def packages_prefix() -> str:
    """Folder of the packages the Install dialog installed (``<GlacierSeg home>/python``)."""
    return os.path.join(glacierseg_home(), PACKAGES_DIR)


def model_store() -> ModelStore:
    """The user's models (profile folder) and those shipped with the plugin."""
    return ModelStore(os.path.join(glacierseg_home(), "models"), [BUNDLED_MODELS])


def raster_path(layer) -> str:
    """The GDAL dataset name of a raster layer — a file, a VRT, a GeoPackage raster
    ('GPKG:file.gpkg:table'), '/vsizip/…', '/vsicurl/…' — or a clear error for layers GDAL cannot
    open directly (WMS, XYZ and other non-GDAL providers)."""
    if layer is None:
        raise QgsProcessingException("No input raster layer was given.")
    if layer.providerType() != "gdal":
        raise QgsProcessingException(
            f"Layer '{layer.name()}' comes from the {layer.providerType()} provider (a web service or "
            "database), which GlacierSeg cannot read pixel by pixel. Export it first: right-click the "
            "layer › Export › Save As… (GeoTIFF, at the resolution you need), then use the saved layer."
        )
    return layer.source().split("|")[0]


def widget_metadata(wrapper: str) -> dict:
    """Parameter metadata that gives the standard dialog the named widget of ``ui/widgets.py``
    (imported only when a dialog opens; batch, modeler and qgis_process keep a text field)."""
    return {"widget_wrapper": {"class": f"{__package__.rsplit('.', 1)[0]}.ui.widgets.{wrapper}"}}


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
    definition = alg.parameterDefinition(name)
    source = alg.parameterAsSource(parameters, name, context)
    if source is not None and list(definition.dataTypes()) == [QgsProcessing.TypeVectorPolygon] \
            and QgsWkbTypes.geometryType(source.wkbType()) != QgsWkbTypes.PolygonGeometry:
        # qgis_process and processing.run do not enforce the layer type
        raise QgsProcessingException(
            f"'{definition.description()}' holds {QgsWkbTypes.displayString(source.wkbType())} geometry but needs "
            "polygons. Give a polygon layer.")
    return alg.parameterAsCompatibleSourceLayerPathAndLayerName(
        parameters, name, context, ["gpkg", "shp", "geojson"], "gpkg", feedback)


def vector_source_uri(alg, parameters, name, context, feedback) -> Optional[str]:
    """``vector_source`` as one OGR string ('file|layername=x'), or None."""
    path, layer = vector_source(alg, parameters, name, context, feedback)
    if path is None:
        return None
    return f"{path}|layername={layer}" if layer else path


def add_class_filter(alg, name: str = "CLASSES", parent: str = "INPUT") -> None:
    """The class filter of the glacier-inventory steps: class names (``class_name`` values) to use,
    comma-separated; empty = the glacier classes; ``*`` = every polygon."""
    from qgis.core import QgsProcessingParameterString

    param = QgsProcessingParameterString(
        name, "Classes to use (class_name; empty: glacier classes, *: all)", optional=True)
    param.setMetadata(widget_metadata("ClassFilterWidgetWrapper"))
    alg.addParameter(param)


def class_filtered_source(alg, parameters, name, classes_name, context, feedback) -> Tuple[str, Optional[str]]:
    """``vector_source`` of polygon parameter ``name``, keeping only the classes chosen by
    ``classes_name`` (see ``add_class_filter``) when the layer has a ``class_name`` field (e.g.
    segment's outlines, where lakes must not be split or measured as glaciers)."""
    from qgis.core import QgsFeatureRequest, QgsProcessingUtils, QgsVectorFileWriter

    from ..core.contract import is_glacier_class

    source = alg.parameterAsSource(parameters, name, context)
    if source is None:
        raise QgsProcessingException(f"No layer was given for {name}.")
    text = alg.parameterAsString(parameters, classes_name, context).strip()
    index = source.fields().indexOf("class_name")
    if index < 0 or text == "*":
        return vector_source(alg, parameters, name, context, feedback)
    present = sorted({str(v) for v in source.uniqueValues(index) if v not in (None, "")})
    wanted = [t.strip() for t in text.split(",") if t.strip()] if text else [c for c in present if is_glacier_class(c)]
    if not set(wanted) & set(present):
        raise QgsProcessingException(
            f"No polygon of the classes {', '.join(wanted) or '(glacier classes)'}: the layer's classes are "
            f"{', '.join(present) or 'none'}. Choose the classes to use (or * for every polygon).")
    if set(present) <= set(wanted):
        return vector_source(alg, parameters, name, context, feedback)
    path = QgsProcessingUtils.generateTempFilename(f"{name.lower()}_classes.gpkg")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName, options.layerName = "GPKG", "outlines"
    writer = QgsVectorFileWriter.create(path, source.fields(), source.wkbType(), source.sourceCrs(),
                                        context.transformContext(), options)
    quoted = ", ".join("'" + w.replace("'", "''") + "'" for w in wanted)
    count = 0
    for feature in source.getFeatures(QgsFeatureRequest().setFilterExpression(f'"class_name" IN ({quoted})')):
        writer.addFeature(feature)
        count += 1
    del writer
    feedback.pushInfo(f"Using the {count} polygons of class {', '.join(w for w in wanted if w in present)}; "
                      f"left out: {', '.join(c for c in present if c not in wanted)}.")
    return path, "outlines"


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
    GROUP = MAPPING
    HELP = ""
    SHORT = ""  # one sentence for the toolbox tooltip
    TAGS: Tuple[str, ...] = ()  # toolbox search words
    HELP_PAGE = "manual.md"  # page in the shipped docs/ the Help button opens
    MANUAL_SECTION = ""  # anchor in that page
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

    def shortDescription(self) -> str:  # noqa: N802
        return self.SHORT

    def tags(self):
        return list(self.TAGS) + ["glacierseg", "glacier", "remote sensing"]

    def helpUrl(self) -> str:  # noqa: N802
        url = QUrl.fromLocalFile(os.path.join(PLUGIN_DIR, "docs", self.HELP_PAGE))
        if self.MANUAL_SECTION:
            url.setFragment(self.MANUAL_SECTION)
        return url.toString()

    def icon(self) -> QIcon:
        return QIcon(ICON_PATH)

    def createInstance(self):  # noqa: N802
        return type(self)()

    def processAlgorithm(self, parameters, context, feedback) -> Dict[str, Any]:  # noqa: N802
        try:
            require(*self.REQUIRES)
            self.check_paths(parameters, context)
            return self.process(parameters, context, feedback, FeedbackProgress(feedback))
        except CancelledError as exc:
            raise QgsProcessingException(str(exc) if exc.kept else f"{exc} No output was written.") from None
        except GlacierSegError as exc:
            raise QgsProcessingException(str(exc)) from None

    def check_paths(self, parameters, context) -> None:
        """Refuse (``InputError``) outputs that are the same file as an input or as another
        output, for every algorithm: outputs are replaced whole, so either would be lost."""
        inputs, outputs = {}, {}
        for p in self.parameterDefinitions():
            name, label = p.name(), p.description()
            if not parameters.get(name):
                continue
            if isinstance(p, QgsProcessingDestinationParameter):
                value = parameters[name]
                if isinstance(value, QgsProcessingOutputLayerDefinition):
                    value = value.sink.staticValue()
                if value == QgsProcessing.TEMPORARY_OUTPUT:
                    continue  # a fresh temporary file; resolving it here would make a second one
                layer_output = isinstance(p, (QgsProcessingParameterRasterDestination,
                                              QgsProcessingParameterVectorDestination))
                as_path = self.parameterAsOutputLayer if layer_output else self.parameterAsFileOutput
                path = as_path(parameters, name, context)
                # files only: no 'memory:' or database URIs (a drive letter is fine)
                if path and path != QgsProcessing.TEMPORARY_OUTPUT and not re.match(r"[A-Za-z][\w+.-]+:", path) \
                        and not os.path.isdir(path):
                    outputs[label] = path
            elif isinstance(p, QgsProcessingParameterRasterLayer):
                layer = self.parameterAsRasterLayer(parameters, name, context)
                inputs[label] = layer.source() if layer is not None else None
            elif isinstance(p, (QgsProcessingParameterFeatureSource, QgsProcessingParameterVectorLayer)):
                layer = self.parameterAsVectorLayer(parameters, name, context)
                inputs[label] = layer.source() if layer is not None else None
            elif isinstance(p, QgsProcessingParameterMapLayer):
                layer = self.parameterAsLayer(parameters, name, context)
                inputs[label] = layer.source() if layer is not None else None
            elif isinstance(p, QgsProcessingParameterMultipleLayers):
                for i, layer in enumerate(self.parameterAsLayerList(parameters, name, context), start=1):
                    inputs[f"{label} {i}"] = layer.source()
            elif isinstance(p, QgsProcessingParameterFile):
                inputs[label] = self.parameterAsFile(parameters, name, context)
        check_output_paths(outputs, inputs)

    def process(self, parameters, context, feedback, progress) -> Dict[str, Any]:
        raise NotImplementedError

