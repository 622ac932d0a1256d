"""glacierseg:split_glaciers — split glacier complexes into glaciers with a DEM (Kienholz et al. 2013)."""
from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProcessingUtils,
)

from ..core.glacier_ids import assign_ids
from ..core.parameters import ROUTINGS, SplitParameters
from ..ui.correction import editable_style
from ..ui.styles import style_divides, style_glaciers, style_on_load
from .base import INVENTORY, GlacierSegAlgorithm, add_class_filter, class_filtered_source, raster_path, widget_metadata
from .dem_parameters import FILL_HELP, add_dem_void_parameters, max_void_fraction, plausible_elevation
from .dem_parameters import HELP as DEM_HELP
from .layer_inputs import input_file

_D = SplitParameters()


class SplitGlaciersAlgorithm(GlacierSegAlgorithm):
    NAME = "split_glaciers"
    DISPLAY_NAME = "Split glacier complexes (DEM)"
    GROUP = INVENTORY
    SHORT = "Splits glacier complexes into glaciers along ice divides from a DEM (Kienholz et al. 2013)."
    TAGS = ("ice divide", "drainage basin", "watershed", "flowshed", "rgi", "inventory", "dem", "kienholz",
            "complex", "split")
    MANUAL_SECTION = "split"
    REQUIRES = ("numpy", "scipy", "rasterio", "shapely", "pyproj", "pysheds")
    HELP = (
        "Splits glacier complexes (ice bodies that meet at ice divides) into individual glaciers with a "
        "DEM, following Kienholz, Hock &amp; Arendt (2013), J. Glaciol. 59(217), 925–937, "
        "doi:10.3189/2013JoG12J138. Each complex is processed on a grid in its own UTM zone; the DEM is "
        "resampled onto it bilinearly, smoothed (median filter) and sink-filled; a gutter just outside the "
        "outline is lowered; D-infinity flow routing and flow accumulation (pysheds) give one flowshed per pour "
        "point (where flow from the complex ends, in the gutter); flowsheds that meet within "
        "r = min(a·F<sup>b</sup>, c) of a pour point (F: its flow accumulation) are merged; slivers join "
        "the neighbour with the longest shared boundary. The glaciers partition each complex exactly "
        "(cut by its own outline) and are written in the outlines' CRS.<br><br>"
        "<b>Glacier complexes</b>: polygon layer, any CRS.<br>"
        "<b>Classes to use</b>: for layers with a <i>class_name</i> field (segment's outlines) only the "
        "glacier classes are split by default (not glacial lakes); tick others, or give * in scripts for "
        "every polygon.<br>"
        "<b>Complex id field</b>: field copied to each glacier as <i>complex_id</i> (default: feature id).<br>"
        "<b>DEM</b>: elevation raster in metres, any CRS and resolution. DEM voids are filled; a complex the DEM "
        "does not cover, or that fails, is written unsplit with a warning and <i>split_status</i> "
        "unsplit_no_dem / unsplit_error: message (split otherwise).<br>"
        + DEM_HELP + FILL_HELP +
        f"<b>Working cell size</b> (default {_D.cell_size_m:g} m, the grid the merge constants refer to, whatever "
        "the DEM's resolution; 0 = the DEM's own cell size).<br>"
        f"<b>Buffer</b> (default {_D.buffer_cells} cells): DEM used within this distance of the outline.<br>"
        f"<b>Gutter offset / width / depth</b> (defaults {_D.gutter_offset_cells:g} cell, "
        f"{_D.gutter_cells:g} cells, {_D.gutter_depth_m:g} m).<br>"
        f"<b>Smoothing window</b> (default {_D.smoothing_cells} cells; 1 = none).<br>"
        "<b>Flow routing</b> (default D-infinity, as the OGGM implementation of the method; D8 available).<br>"
        f"<b>a, b, c</b> (defaults {_D.a:g}, {_D.b:g}, {_D.c_m:g} m, Kienholz et al. 2013): merge radius "
        f"r = min(a·F<sup>b</sup>, c) with F in cells of {_D.a_cell_m:g} m; on a grid of cell size dx, "
        f"a is scaled by (dx/{_D.a_cell_m:g})<sup>2b</sup> so r depends on drainage area, not on dx.<br>"
        f"<b>Sliver thresholds</b> (defaults {_D.sliver_area_km2:g} km², or {_D.sliver_area2_km2:g} km² "
        f"when compactness 2√(πA)/P &lt; {_D.sliver_compactness:g}).<br>"
        f"<b>Interior pieces</b> (defaults {_D.interior_area_km2:g} km², {100 * _D.interior_rim_share:g} %): pieces "
        "smaller than this with less than this share of their perimeter on the complex outline are merged into the "
        "neighbour with the longest shared boundary.<br>"
        f"<b>Edge strips</b> (default {100 * _D.edge_strip_neighbour_share:g} %): elongated pieces (compactness below "
        "the sliver compactness) smaller than the interior piece area, with at least the interior share of their "
        "perimeter on the outline and at least this share along one neighbour, are merged into it.<br>"
        f"<b>Merge neighbour ratio</b> (default {_D.merge_neighbour_ratio:g}): interior pieces and edge strips only "
        "join a neighbour at least this many times larger (the sectors of an ice cap stay apart).<br><br>"
        "<b>Glacier ID prefix</b> (default G-): each glacier gets <i>glacier_id</i> = prefix + a five-digit "
        "number, numbered west to east by its representative point, so a rerun on the same input gives the "
        "same IDs.<br>"
        "<b>Outputs</b>: <i>Glaciers</i> (glacier_id, glac_id, complex_id, area_km2 on the UTM grid, split_status, "
        "filled_pct: share of the glacier's DEM cells that were filled voids) and <i>Ice divides</i> "
        "(lines between adjacent glaciers: complex_id, glac_id_1, glac_id_2, length_m). "
        "See docs/glacier-split.md."
    )

    INPUT, ID_FIELD, DEM = "INPUT", "ID_FIELD", "DEM"
    CELL_SIZE, BUFFER, GUTTER_OFFSET, GUTTER_WIDTH, GUTTER_DEPTH, SMOOTHING = (
        "CELL_SIZE", "BUFFER", "GUTTER_OFFSET", "GUTTER_WIDTH", "GUTTER_DEPTH", "SMOOTHING")
    A, B, C, SLIVER_AREA, SLIVER_AREA2, SLIVER_COMPACTNESS = (
        "A", "B", "C", "SLIVER_AREA", "SLIVER_AREA2", "SLIVER_COMPACTNESS")
    INTERIOR_AREA, INTERIOR_SHARE, ROUTING = "INTERIOR_AREA", "INTERIOR_RIM_SHARE", "ROUTING"
    EDGE_STRIP_SHARE, MERGE_RATIO = "EDGE_STRIP_NEIGHBOUR_SHARE", "MERGE_NEIGHBOUR_RATIO"
    OUTPUT, DIVIDES, CLASSES, ID_PREFIX = "OUTPUT", "DIVIDES", "CLASSES", "ID_PREFIX"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.INPUT, "Glacier complexes", [QgsProcessing.TypeVectorPolygon]))
        add_class_filter(self, self.CLASSES, self.INPUT)
        id_field = QgsProcessingParameterField(
            self.ID_FIELD, "Complex id field", parentLayerParameterName=self.INPUT, optional=True)
        id_field.setMetadata(widget_metadata("VectorFieldWidgetWrapper"))
        self.addParameter(id_field)
        self.addParameter(QgsProcessingParameterRasterLayer(self.DEM, "DEM"))
        self.addParameter(QgsProcessingParameterString(
            self.ID_PREFIX, "Glacier ID prefix (IDs: prefix + running number, west to east)", defaultValue="G-"))
        dbl, integer = QgsProcessingParameterNumber.Double, QgsProcessingParameterNumber.Integer
        advanced = [
            QgsProcessingParameterNumber(
                self.CELL_SIZE, "Working cell size (m; 0 = the DEM's)", dbl, _D.cell_size_m, minValue=0.0
            ),
            QgsProcessingParameterNumber(self.BUFFER, "Buffer (cells)", integer, _D.buffer_cells, minValue=2),
            QgsProcessingParameterNumber(
                self.GUTTER_OFFSET, "Gutter offset (cells)", dbl, _D.gutter_offset_cells, minValue=0.0
            ),
            QgsProcessingParameterNumber(self.GUTTER_WIDTH, "Gutter width (cells)", dbl, _D.gutter_cells, minValue=1.0),
            QgsProcessingParameterNumber(self.GUTTER_DEPTH, "Gutter depth (m)", dbl, _D.gutter_depth_m, minValue=1.0),
            QgsProcessingParameterNumber(
                self.SMOOTHING, "Smoothing window (cells, 1 = none)", integer, _D.smoothing_cells, minValue=1
            ),
            QgsProcessingParameterEnum(
                self.ROUTING,
                "Flow routing",
                ["D-infinity (Tarboton 1997)", "D8"],
                defaultValue=ROUTINGS.index(_D.routing),
            ),
            QgsProcessingParameterNumber(self.A, f"a (for {_D.a_cell_m:g} m cells)", dbl, _D.a, minValue=0.0),
            QgsProcessingParameterNumber(self.B, "b", dbl, _D.b, minValue=0.01),
            QgsProcessingParameterNumber(self.C, "c: largest merge radius (m)", dbl, _D.c_m, minValue=0.0),
            QgsProcessingParameterNumber(self.SLIVER_AREA, "Sliver area (km²)", dbl, _D.sliver_area_km2, minValue=0.0),
            QgsProcessingParameterNumber(
                self.SLIVER_AREA2, "Elongated sliver area (km²)", dbl, _D.sliver_area2_km2, minValue=0.0
            ),
            QgsProcessingParameterNumber(
                self.SLIVER_COMPACTNESS, "Elongated sliver compactness", dbl, _D.sliver_compactness, minValue=0.0
            ),
            QgsProcessingParameterNumber(
                self.INTERIOR_AREA, "Interior piece area (km²)", dbl, _D.interior_area_km2, minValue=0.0
            ),
            QgsProcessingParameterNumber(
                self.INTERIOR_SHARE,
                "Interior piece: largest share of perimeter on the outline (%)",
                dbl,
                100 * _D.interior_rim_share,
                minValue=0.0,
                maxValue=100.0,
            ),
            QgsProcessingParameterNumber(
                self.EDGE_STRIP_SHARE,
                "Edge strip: smallest share of perimeter along one neighbour (%)",
                dbl,
                100 * _D.edge_strip_neighbour_share,
                minValue=0.0,
                maxValue=100.0,
            ),
            QgsProcessingParameterNumber(
                self.MERGE_RATIO,
                "Interior pieces and edge strips join only a neighbour this many times larger",
                dbl,
                _D.merge_neighbour_ratio,
                minValue=0.0,
            ),
        ]
        for p in advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        add_dem_void_parameters(self, with_fill=True)
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT, "Glaciers", QgsProcessing.TypeVectorPolygon, defaultValue=QgsProcessing.TEMPORARY_OUTPUT))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.DIVIDES, "Ice divides", QgsProcessing.TypeVectorLine, optional=True, createByDefault=True))
        self.addOutput(QgsProcessingOutputNumber("N_GLACIERS", "Number of glaciers"))
        self.addOutput(QgsProcessingOutputNumber("N_UNSPLIT", "Number of complexes left unsplit"))

    def process(self, parameters, context, feedback, progress):
        from ..core.dem_split import split_glaciers  # here, not at load: the provider loads without its dependencies
        path, layer_name = class_filtered_source(self, parameters, self.INPUT, self.CLASSES, context, feedback)
        source_name = self.parameterAsSource(parameters, self.INPUT, context).sourceName()
        dem = raster_path(self.parameterAsRasterLayer(parameters, self.DEM, context))
        number = lambda name: self.parameterAsDouble(parameters, name, context)  # noqa: E731
        params = SplitParameters(
            cell_size_m=number(self.CELL_SIZE), buffer_cells=self.parameterAsInt(parameters, self.BUFFER, context),
            gutter_offset_cells=number(self.GUTTER_OFFSET), gutter_cells=number(self.GUTTER_WIDTH),
            gutter_depth_m=number(self.GUTTER_DEPTH),
            smoothing_cells=self.parameterAsInt(parameters, self.SMOOTHING, context),
            routing=ROUTINGS[self.parameterAsEnum(parameters, self.ROUTING, context)],
            a=number(self.A), b=number(self.B), c_m=number(self.C), sliver_area_km2=number(self.SLIVER_AREA),
            sliver_area2_km2=number(self.SLIVER_AREA2), sliver_compactness=number(self.SLIVER_COMPACTNESS),
            interior_area_km2=number(self.INTERIOR_AREA), interior_rim_share=number(self.INTERIOR_SHARE) / 100.0,
            edge_strip_neighbour_share=number(self.EDGE_STRIP_SHARE) / 100.0,
            merge_neighbour_ratio=number(self.MERGE_RATIO),
            max_void_fraction=max_void_fraction(self, parameters, context))
        id_field = (self.parameterAsFields(parameters, self.ID_FIELD, context) or [None])[0]
        glaciers = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        divides = (self.parameterAsOutputLayer(parameters, self.DIVIDES, context) if parameters.get(self.DIVIDES)
                   else None)
        divides = divides or QgsProcessingUtils.generateTempFilename("ice_divides.gpkg")  # the core writes both
        result = split_glaciers(path, dem, glaciers, divides, id_field=id_field, params=params,
                                outlines_layer=layer_name or None,
                                plausible_elevation=plausible_elevation(self, parameters, context), progress=progress)
        assign_ids(glaciers, self.parameterAsString(parameters, self.ID_PREFIX, context))
        style_on_load(context, glaciers, editable_style(style_glaciers, input_file(self, parameters, context)),
                      source_name)
        style_on_load(context, divides, style_divides, source_name)
        outputs = {self.OUTPUT: glaciers, "N_GLACIERS": result["n_glaciers"],
                   "N_UNSPLIT": result["n_unsplit_no_dem"] + result["n_unsplit_error"]}
        if parameters.get(self.DIVIDES):
            outputs[self.DIVIDES] = divides
        return outputs
