"""The DEM-void parameters every algorithm that reads a DEM shows (core.dem's one void rule)."""
from __future__ import annotations

from typing import Tuple

from qgis.core import QgsProcessingParameterDefinition, QgsProcessingParameterNumber

from ..core.dem import PLAUSIBLE_ELEVATION_M
from ..core.parameters import MAX_VOID_FRACTION

PLAUSIBLE_MIN, PLAUSIBLE_MAX, MAX_VOID = "PLAUSIBLE_MIN", "PLAUSIBLE_MAX", "MAX_VOID_PERCENT"
HELP = (
    f"<b>Plausible elevations</b> (advanced, defaults {PLAUSIBLE_ELEVATION_M[0]:g} to {PLAUSIBLE_ELEVATION_M[1]:g} m): "
    "DEM values outside this range (such as −32768, the void value of SRTM and ASTER products stored without a "
    "nodata tag) are treated as voids, with a warning.<br>")
FILL_HELP = (
    f"<b>Largest void share</b> (advanced, default {100 * MAX_VOID_FRACTION:g} %): DEM voids are filled by "
    "interpolation from their edges (GDAL FillNodata); an outline with a larger share without elevation (or off the "
    "DEM) is not filled and gets no topography.<br>")


def add_dem_void_parameters(alg, with_fill: bool) -> None:
    """Advanced parameters: the plausible elevation range, and (``with_fill``) the largest void share filled."""
    dbl = QgsProcessingParameterNumber.Double
    params = [
        QgsProcessingParameterNumber(PLAUSIBLE_MIN, "Lowest plausible elevation (m)", dbl, PLAUSIBLE_ELEVATION_M[0]),
        QgsProcessingParameterNumber(PLAUSIBLE_MAX, "Highest plausible elevation (m)", dbl, PLAUSIBLE_ELEVATION_M[1]),
    ]
    if with_fill:
        params.append(QgsProcessingParameterNumber(MAX_VOID, "Largest share of an outline without elevation that is "
                                                   "filled (%)", dbl, 100 * MAX_VOID_FRACTION, minValue=0.0,
                                                   maxValue=99.0))
    for p in params:
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        alg.addParameter(p)


def plausible_elevation(alg, parameters, context) -> Tuple[float, float]:
    """The plausible elevation range (lowest, highest) in metres set in the dialog."""
    return (alg.parameterAsDouble(parameters, PLAUSIBLE_MIN, context),
            alg.parameterAsDouble(parameters, PLAUSIBLE_MAX, context))


def max_void_fraction(alg, parameters, context) -> float:
    """The largest void share filled, as a fraction (the dialog asks for percent)."""
    return alg.parameterAsDouble(parameters, MAX_VOID, context) / 100.0
