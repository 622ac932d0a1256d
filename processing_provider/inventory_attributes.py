"""glacierseg:inventory_attributes — RGI 7-style attributes of glacier outlines from a DEM."""
from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from ..ui.styles import style_on_load
from .base import GlacierSegAlgorithm, raster_path, vector_source
from .dem_parameters import HELP as DEM_HELP, FILL_HELP, add_dem_void_parameters, max_void_fraction, plausible_elevation
from .split_glaciers import style_glaciers


class InventoryAttributesAlgorithm(GlacierSegAlgorithm):
    NAME = "inventory_attributes"
    DISPLAY_NAME = "Glacier inventory attributes (RGI 7)"
    GROUP = "Glacier inventory"
    REQUIRES = ("numpy", "scipy", "rasterio", "shapely", "pyproj")
    HELP = (
        "Adds RGI 7-style attributes (RGI Consortium 2023, RGI 7.0 technical note / user guide) to glacier "
        "outlines, computed as RGI 7 did with OGGM (Maussion et al. 2019): each glacier's DEM is resampled "
        "bilinearly onto a grid in its UTM zone with cell size dx = 14·√A + 10 m (A in km², rounded, at most "
        "100 m), and statistics are taken over the cells whose centre lies in the outline.<br><br>"
        "<b>Glacier outlines</b>: polygon layer, any CRS; its fields are kept (same-named fields are replaced).<br>"
        "<b>DEM</b>: elevation raster in metres, any CRS. DEM voids are filled (share in <i>filled_pct</i>); a "
        "glacier the DEM does not cover gets empty topography fields and a warning naming it.<br>"
        + DEM_HELP + FILL_HELP +
        "<b>DEM source</b> (default: the DEM's file name) is written to <i>dem_source</i>.<br>"
        "<b>Outline date</b> (ISO 8601, e.g. the image's acquisition date) is written to <i>src_date</i>; empty: "
        "the outlines' own src_date field where they have one.<br><br>"
        "<b>Fields</b>: area_km2 (geodesic, WGS 84 ellipsoid); cenlon/cenlat (representative point, inside the "
        "outline); utm_zone; zmin_m, zmax_m, zmed_m, zmean_m; slope_deg (mean of the cells' slopes); aspect_deg "
        "(azimuth of the mean downslope gradient); aspect_sec (1 = N … 8 = NW, 9 = not assigned); termlon/termlat "
        "(lowest cell on the outer boundary); dem_source; src_date; filled_pct. The longest centerline length lmax_m is not "
        "computed. See docs/glacier-split.md."
    )

    INPUT, DEM, DEM_SOURCE, SRC_DATE, OUTPUT = "INPUT", "DEM", "DEM_SOURCE", "SRC_DATE", "OUTPUT"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.INPUT, "Glacier outlines", [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterRasterLayer(self.DEM, "DEM"))
        self.addParameter(QgsProcessingParameterString(self.DEM_SOURCE, "DEM source (e.g. COPDEM30)", optional=True))
        self.addParameter(QgsProcessingParameterString(self.SRC_DATE, "Outline date (ISO 8601)", optional=True))
        add_dem_void_parameters(self, with_fill=True)
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT, "Glaciers with attributes", QgsProcessing.TypeVectorPolygon))

    def process(self, parameters, context, feedback, progress):
        from ..core.inventory import inventory_attributes  # here, not at load: the provider loads without its dependencies
        path, layer_name = vector_source(self, parameters, self.INPUT, context, feedback)
        dem = raster_path(self.parameterAsRasterLayer(parameters, self.DEM, context))
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        inventory_attributes(
            path, dem, output,
            dem_source=self.parameterAsString(parameters, self.DEM_SOURCE, context).strip() or None,
            src_date=self.parameterAsString(parameters, self.SRC_DATE, context).strip() or None,
            outlines_layer=layer_name or None, plausible_elevation=plausible_elevation(self, parameters, context),
            max_void_fraction=max_void_fraction(self, parameters, context), progress=progress)
        style_on_load(context, output, style_glaciers)
        return {self.OUTPUT: output}
