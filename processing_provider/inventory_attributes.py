"""glacierseg:inventory_attributes — RGI 7-style attributes of glacier outlines from a DEM."""
from __future__ import annotations

from qgis.core import (
    NULL,
    QgsField,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDateTime,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)
from qgis.PyQt.QtCore import QVariant

from ..ui.correction import REVIEW_FIELD, editable_style
from ..ui.styles import style_glaciers, style_on_load
from .base import INVENTORY, GlacierSegAlgorithm, add_class_filter, class_filtered_source, raster_path
from .dem_parameters import FILL_HELP, add_dem_void_parameters, max_void_fraction, plausible_elevation
from .dem_parameters import HELP as DEM_HELP
from .layer_inputs import input_file

_QT_TYPES = {"int": QVariant.Int, "str": QVariant.String, "real": QVariant.Double}


class InventoryAttributesAlgorithm(GlacierSegAlgorithm):
    NAME = "inventory_attributes"
    DISPLAY_NAME = "Inventory attributes (RGI 7)"
    GROUP = INVENTORY
    SHORT = "Adds RGI 7-style topographic attributes (elevation, slope, aspect, area, centre) to glacier outlines."
    TAGS = ("rgi", "inventory", "attributes", "hypsometry", "elevation", "slope", "aspect", "dem", "zmed",
            "update", "correction")
    MANUAL_SECTION = "attributes"
    REQUIRES = ("numpy", "scipy", "rasterio", "shapely", "pyproj")
    HELP = (
        "Adds RGI 7-style attributes (RGI Consortium 2023, RGI 7.0 technical note / user guide) to glacier "
        "outlines, computed as RGI 7 did with OGGM (Maussion et al. 2019): each glacier's DEM is resampled "
        "bilinearly onto a grid in its UTM zone with cell size dx = 14·√A + 10 m (A in km², rounded, at most "
        "100 m), and statistics are taken over the cells whose centre lies in the outline.<br><br>"
        "<b>Glacier outlines</b>: polygon layer, any CRS; its fields are kept (same-named fields are replaced).<br>"
        "<b>Classes to use</b>: for layers with a <i>class_name</i> field (segment's outlines) only the glacier "
        "classes by default (not glacial lakes).<br>"
        "<b>DEM</b>: elevation raster in metres, any CRS. DEM voids are filled (share in <i>filled_pct</i>); a "
        "glacier the DEM does not cover gets empty topography fields and a warning naming it.<br>"
        + DEM_HELP + FILL_HELP +
        "<b>DEM source</b> (default: the DEM's file name) is written to <i>dem_source</i>.<br>"
        "<b>Outline date</b> (e.g. the image's acquisition date) is written to <i>src_date</i> (ISO 8601); "
        "empty: the outlines' own src_date field where they have one.<br>"
        "<b>Update in place</b>: after manual corrections, recomputes the attributes of the changed features "
        "only — those whose <i>review_status</i> is <i>corrected</i> or that have no attributes yet (drawn "
        "by hand) — directly in the outlines layer (save your edits first); IDs, review status and all other "
        "features are kept as they are; a hand-drawn glacier gets the next <i>glacier_id</i>. The output is then "
        "not written.<br><br>"
        "<b>Fields</b>: area_km2 (geodesic, WGS 84 ellipsoid); cenlon/cenlat (representative point, inside the "
        "outline); utm_zone; zmin_m, zmax_m, zmed_m, zmean_m; slope_deg (mean of the cells' slopes); aspect_deg "
        "(azimuth of the mean downslope gradient); aspect_sec (1 = N … 8 = NW, 9 = not assigned); termlon/termlat "
        "(lowest cell on the outer boundary); dem_source; src_date; filled_pct. The longest centerline length lmax_m "
        "is not "
        "computed. See docs/glacier-split.md."
    )

    INPUT, DEM, DEM_SOURCE, SRC_DATE, OUTPUT = "INPUT", "DEM", "DEM_SOURCE", "SRC_DATE", "OUTPUT"
    CLASSES, IN_PLACE = "CLASSES", "UPDATE_IN_PLACE"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.INPUT, "Glacier outlines", [QgsProcessing.TypeVectorPolygon]))
        add_class_filter(self, self.CLASSES, self.INPUT)
        self.addParameter(QgsProcessingParameterRasterLayer(self.DEM, "DEM"))
        self.addParameter(QgsProcessingParameterString(self.DEM_SOURCE, "DEM source (e.g. COPDEM30)", optional=True))
        self.addParameter(QgsProcessingParameterDateTime(
            self.SRC_DATE, "Outline date (image acquisition)", QgsProcessingParameterDateTime.Date, optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.IN_PLACE, "Update in place (changed features only, after corrections)", defaultValue=False))
        add_dem_void_parameters(self, with_fill=True)
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT, "Glaciers with attributes", QgsProcessing.TypeVectorPolygon, optional=True,
            createByDefault=True))
        self.addOutput(QgsProcessingOutputNumber("N_UPDATED", "Features whose attributes were (re)computed"))

    def _date(self, parameters, context):
        if not parameters.get(self.SRC_DATE):
            return None
        date = self.parameterAsDateTime(parameters, self.SRC_DATE, context).date()
        return date.toString("yyyy-MM-dd") if date.isValid() else None

    def process(self, parameters, context, feedback, progress):
        dem = raster_path(self.parameterAsRasterLayer(parameters, self.DEM, context))
        dem_source = self.parameterAsString(parameters, self.DEM_SOURCE, context).strip() or None
        src_date = self._date(parameters, context)
        if self.parameterAsBool(parameters, self.IN_PLACE, context):
            return self.update_in_place(parameters, context, feedback, progress, dem, dem_source, src_date)
        if not parameters.get(self.OUTPUT):
            raise QgsProcessingException("Give the Glaciers with attributes output, or tick Update in place.")
        from ..core.geo import VectorSource  # here, not at load: the provider loads without its dependencies
        from ..core.inventory import inventory_attributes
        path, layer_name = class_filtered_source(self, parameters, self.INPUT, self.CLASSES, context, feedback)
        outlines = VectorSource(path, layer_name or None)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        result = inventory_attributes(outlines, dem, output, dem_source=dem_source, src_date=src_date,
                                      plausible_elevation=plausible_elevation(self, parameters, context),
                                      max_void_fraction=max_void_fraction(self, parameters, context), progress=progress)
        source_name = self.parameterAsSource(parameters, self.INPUT, context).sourceName()
        style_on_load(context, output, editable_style(style_glaciers, input_file(self, parameters, context)),
                      source_name)
        return {self.OUTPUT: output, "N_UPDATED": result["n_glaciers"]}

    def update_in_place(self, parameters, context, feedback, progress, dem, dem_source, src_date):
        """Attributes of the corrected / new features, written into the input layer's data source."""
        import os

        import shapely

        from ..core.contract import is_glacier_class
        from ..core.dem import Dem
        from ..core.glacier_ids import ID_FIELD, glacier_id, id_prefix, next_number
        from ..core.inventory import ATTRIBUTE_FIELDS, glacier_attributes

        layer = self.parameterAsVectorLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException("Update in place needs a layer of the project (or a file) as outlines.")
        if layer.isEditable() and layer.isModified():
            raise QgsProcessingException(f"Layer '{layer.name()}' has unsaved edits: save them first "
                                         "(Layer › Save Layer Edits), then run the update again.")
        provider = layer.dataProvider()
        missing = [QgsField(name, _QT_TYPES[kind]) for name, kind in ATTRIBUTE_FIELDS
                   if layer.fields().indexOf(name) < 0]
        if missing and not provider.addAttributes(missing):
            raise QgsProcessingException(f"Cannot add fields to '{layer.name()}' ({provider.name()}); "
                                         "save it as a GeoPackage first.")
        layer.updateFields()
        fields = layer.fields()
        wanted = self.parameterAsString(parameters, self.CLASSES, context).strip()
        wanted_names = {t.strip() for t in wanted.split(",") if t.strip()}

        def chosen(feature) -> bool:
            if fields.indexOf("class_name") < 0 or wanted == "*":
                return True
            name = feature["class_name"]
            if name is None or name == NULL or name == "":
                return True  # drawn by hand and not classified yet
            return name in wanted_names if wanted_names else is_glacier_class(str(name))

        def changed(feature) -> bool:
            status = feature[REVIEW_FIELD] if fields.indexOf(REVIEW_FIELD) >= 0 else None
            return status == "corrected" or feature["zmed_m"] is None or feature["zmed_m"] == NULL

        todo = [f for f in layer.getFeatures() if chosen(f) and changed(f) and not f.geometry().isEmpty()]
        crs_wkt = layer.crs().toWkt()
        source = dem_source or os.path.splitext(os.path.basename(dem))[0]
        updates = {}
        with Dem(dem, plausible_elevation(self, parameters, context), progress) as opened:
            for i, feature in enumerate(todo):
                if feedback.isCanceled():
                    raise QgsProcessingException("Cancelled: the layer was not changed.")
                geom = shapely.from_wkb(bytes(feature.geometry().asWkb()))
                values = glacier_attributes(geom, crs_wkt, opened, str(feature.id()),
                                            max_void_fraction(self, parameters, context))
                values["dem_source"] = source
                if src_date:
                    values["src_date"] = src_date
                updates[feature.id()] = {fields.indexOf(k): v for k, v in values.items() if fields.indexOf(k) >= 0}
                feedback.setProgress(100.0 * (i + 1) / len(todo))
        id_index = fields.indexOf(ID_FIELD)
        if id_index >= 0:  # hand-drawn glaciers get the next number of the layer's IDs; others keep theirs
            existing = [f[ID_FIELD] for f in layer.getFeatures() if f[ID_FIELD] not in (None, NULL, "")]
            prefix, number = id_prefix(existing), None
            for feature in todo:
                if feature[ID_FIELD] in (None, NULL, ""):
                    number = number + 1 if number else next_number(existing, prefix)
                    updates.setdefault(feature.id(), {})[id_index] = glacier_id(prefix, number)
        if updates and not provider.changeAttributeValues(updates):
            raise QgsProcessingException(f"Could not write the attributes into '{layer.name()}'.")
        layer.reload()
        layer.triggerRepaint()
        feedback.pushInfo(f"Updated the attributes of {len(updates)} changed feature(s) in '{layer.name()}'; "
                          "the other features were left as they are.")
        return {"N_UPDATED": len(updates)}
