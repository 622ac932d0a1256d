"""glacierseg:compare_outlines — match the outlines of two dates and measure their change."""
from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from ..ui.styles import class_vector_renderer, style_on_load
from .base import EVALUATION, GlacierSegAlgorithm, vector_source


class CompareOutlinesAlgorithm(GlacierSegAlgorithm):
    NAME = "compare_outlines"
    DISPLAY_NAME = "Compare outlines of two dates"
    GROUP = EVALUATION
    REQUIRES = ("numpy", "shapely", "pyproj", "matplotlib")
    HELP = (
        "Matches the glaciers (or lakes, or any class) of two outline layers and measures how each "
        "changed: area at each date, change in km² and %, rate per year and how it changed "
        "(same, split, merged, split_merged, new, vanished).<br><br>"
        "<b>Matching</b>: outlines with the same ID at both dates are one object (ID field: the one "
        "you give, else RGI 7 <i>rgi_id</i>, RGI 5/6 <i>RGIId</i>, GLIMS <i>glac_id</i>). The rest are "
        "linked by overlap: an earlier and a later outline belong together when their intersection "
        "covers at least the <i>minimum overlap</i> (default 50 %) of the smaller one; every connected "
        "group is one object. 1 earlier : 1 later = same, 1 : n = split, m : 1 = merged, m : n = "
        "split_merged, 0 : 1 = new, 1 : 0 = vanished.<br>"
        "<b>Dates</b>: give them (a year, 2003-07-30 or an RGI date such as 20030799), or leave empty "
        "to read each outline's date field (RGI 7 <i>src_date</i>, RGI 5/6 <i>BgnDate</i>, <i>date</i>, "
        "or the field you name). Rates are given where the two dates are at least a year apart.<br>"
        "<b>Classes</b>: with a class field (e.g. <i>class_name</i> of GlacierSeg outlines) outlines are "
        "matched within their class; list classes to compare only those.<br><br>"
        "<b>Outputs</b>: a layer of objects (the later outline, or the earlier one for vanished "
        "objects) with both areas, change and rate; a layer of gained and lost areas; a CSV summary per "
        "class (objects, counts per match type, total areas, change, gained and lost km²); an HTML "
        "report with a plot of area change against object size. Areas are planar in the UTM zone of "
        "the outlines' centre."
    )

    INPUT_1, INPUT_2, DATE_1, DATE_2 = "INPUT_1", "INPUT_2", "DATE_1", "DATE_2"
    DATE_FIELD_1, DATE_FIELD_2, ID_FIELD, MATCH_BY_ID = "DATE_FIELD_1", "DATE_FIELD_2", "ID_FIELD", "MATCH_BY_ID"
    CLASS_FIELD, CLASSES, MIN_OVERLAP = "CLASS_FIELD", "CLASSES", "MIN_OVERLAP"
    OUTPUT_OBJECTS, OUTPUT_CHANGES, OUTPUT_SUMMARY, OUTPUT_REPORT = (
        "OUTPUT_OBJECTS", "OUTPUT_CHANGES", "OUTPUT_SUMMARY", "OUTPUT_REPORT")

    SHORT = "Match outlines of two dates (by ID or overlap) and measure area change, gains and losses."
    TAGS = ("change", "compare", "outlines", "inventory", "rgi", "glacier", "lake", "area", "retreat", "dates")
    HELP_PAGE = "compare-outlines.md"

    def initAlgorithm(self, config=None):  # noqa: N802
        polygons = [QgsProcessing.TypeVectorPolygon]
        self.addParameter(
            QgsProcessingParameterFeatureSource(self.INPUT_1, "Outlines at the first (earlier) date", polygons)
        )
        self.addParameter(
            QgsProcessingParameterString(self.DATE_1, "First date (empty: from the date field)", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(self.INPUT_2, "Outlines at the second (later) date", polygons)
        )
        self.addParameter(
            QgsProcessingParameterString(self.DATE_2, "Second date (empty: from the date field)", optional=True)
        )
        self.addParameter(QgsProcessingParameterString(self.ID_FIELD, "ID field (empty: RGI/GLIMS ID field when "
                                                                      "present)", optional=True))
        self.addParameter(
            QgsProcessingParameterString(self.CLASS_FIELD, "Class field (empty: all outlines one class)", optional=True)
        )
        self.addParameter(QgsProcessingParameterString(self.CLASSES, "Classes to compare (comma-separated; empty: "
                                                                     "all)", optional=True))
        advanced = [
            QgsProcessingParameterField(
                self.DATE_FIELD_1, "Date field of the first layer", parentLayerParameterName=self.INPUT_1, optional=True
            ),
            QgsProcessingParameterField(
                self.DATE_FIELD_2,
                "Date field of the second layer",
                parentLayerParameterName=self.INPUT_2,
                optional=True,
            ),
            QgsProcessingParameterBoolean(self.MATCH_BY_ID, "Match by ID where both dates have it", defaultValue=True),
            QgsProcessingParameterNumber(
                self.MIN_OVERLAP,
                "Minimum overlap (% of the smaller outline)",
                QgsProcessingParameterNumber.Double,
                50.0,
                minValue=0.1,
                maxValue=100.0,
            ),
        ]
        for p in advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT_OBJECTS, "Objects with area change", QgsProcessing.TypeVectorPolygon
            )
        )
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT_CHANGES, "Gained and lost areas", QgsProcessing.TypeVectorPolygon
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(self.OUTPUT_SUMMARY, "Summary per class", "CSV files (*.csv)")
        )
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT_REPORT, "Change report", "HTML files "
                                                                                                     "(*.html)"))
        for key, label in (("AREA_1_KM2", "Total area at the first date (km²)"), ("AREA_2_KM2", "Total area at the "
                                                                                                "second date (km²)"),
                           ("CHANGE_KM2", "Total area change (km²)"), ("OBJECTS", "Objects compared")):
            self.addOutput(QgsProcessingOutputNumber(key, label))

    def process(self, parameters, context, feedback, progress):
        from ..core.compare import CHANGE_CLASSES, compare_outlines

        path_1, layer_1 = vector_source(self, parameters, self.INPUT_1, context, feedback)
        path_2, layer_2 = vector_source(self, parameters, self.INPUT_2, context, feedback)
        objects = self.parameterAsOutputLayer(parameters, self.OUTPUT_OBJECTS, context)
        changes = self.parameterAsOutputLayer(parameters, self.OUTPUT_CHANGES, context)
        summary = self.parameterAsFileOutput(parameters, self.OUTPUT_SUMMARY, context)
        report = self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context)
        classes = [c.strip() for c in self.parameterAsString(parameters, self.CLASSES, context).split(",") if c.strip()]
        result = compare_outlines(
            path_1, path_2, objects, changes, summary, report,
            before_layer=layer_1, after_layer=layer_2,
            date_before=self.parameterAsString(parameters, self.DATE_1, context).strip() or None,
            date_after=self.parameterAsString(parameters, self.DATE_2, context).strip() or None,
            date_field_before=self.parameterAsString(parameters, self.DATE_FIELD_1, context) or None,
            date_field_after=self.parameterAsString(parameters, self.DATE_FIELD_2, context) or None,
            id_field=self.parameterAsString(parameters, self.ID_FIELD, context).strip() or None,
            match_by_id=self.parameterAsBool(parameters, self.MATCH_BY_ID, context),
            class_field=self.parameterAsString(parameters, self.CLASS_FIELD, context).strip() or None,
            classes=classes or None,
            min_overlap=self.parameterAsDouble(parameters, self.MIN_OVERLAP, context) / 100.0,
            progress=progress,
        )
        feedback.pushInfo(f"Areas in EPSG:{result.crs_epsg}; ID fields {result.id_fields}, date fields "
                          f"{result.date_fields}.")
        for s in result.summary.values():
            feedback.pushInfo(
                f"{s['class']}: {s['objects']} objects "
                f"({', '.join(f'{t} {s[t]}' for t in ('same', 'split', 'merged', 'split_merged', 'new', 'vanished'))})"
                f"; {s['area_1_km2']:.3f} → {s['area_2_km2']:.3f} km² ({s['change_km2']:+.3f} km²)"
            )
        style_on_load(
            context, changes, lambda lyr: lyr.setRenderer(class_vector_renderer("change_value", CHANGE_CLASSES))
        )
        totals = list(result.summary.values())
        return {
            self.OUTPUT_OBJECTS: objects,
            self.OUTPUT_CHANGES: changes,
            self.OUTPUT_SUMMARY: summary,
            self.OUTPUT_REPORT: report,
            "AREA_1_KM2": sum(s["area_1_km2"] for s in totals),
            "AREA_2_KM2": sum(s["area_2_km2"] for s in totals),
            "CHANGE_KM2": sum(s["change_km2"] for s in totals),
            "OBJECTS": len(result.objects),
        }
