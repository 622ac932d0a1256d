"""The GlacierSeg Processing provider (id ``glacierseg``)."""
from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .base import ICON_PATH
from .compare_outlines import CompareOutlinesAlgorithm
from .evaluate import EvaluateAlgorithm
from .explain import ExplainAlgorithm
from .install_model import InstallModelAlgorithm
from .inventory_attributes import InventoryAttributesAlgorithm
from .list_models import ListModelsAlgorithm
from .map_glaciers_band_ratio import MapGlaciersBandRatioAlgorithm
from .map_inventory import MapInventoryAlgorithm
from .map_lakes import MapLakesAlgorithm
from .optimize_model import OptimizeModelAlgorithm
from .prepare_correction import PrepareCorrectionAlgorithm
from .segment import SegmentAlgorithm
from .split_glaciers import SplitGlaciersAlgorithm
from .train import TrainAlgorithm
from .vectorize import VectorizeAlgorithm

# One entry per algorithm module; ids are stable (glacierseg:<name>).

ALGORITHMS = [
    SegmentAlgorithm,
    VectorizeAlgorithm,
    TrainAlgorithm,
    MapGlaciersBandRatioAlgorithm,
    MapLakesAlgorithm,
    EvaluateAlgorithm,
    SplitGlaciersAlgorithm,
    InventoryAttributesAlgorithm,
    InstallModelAlgorithm,
    ListModelsAlgorithm,
    ExplainAlgorithm,
    CompareOutlinesAlgorithm,
    PrepareCorrectionAlgorithm,
    OptimizeModelAlgorithm,
    MapInventoryAlgorithm,
]


class GlacierSegProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "glacierseg"

    def name(self) -> str:
        return "GlacierSeg"

    def longName(self) -> str:  # noqa: N802
        return "GlacierSeg — glaciers, glacial lakes and landslides from satellite imagery"

    def icon(self) -> QIcon:
        return QIcon(ICON_PATH)

    def loadAlgorithms(self) -> None:  # noqa: N802
        for algorithm in ALGORITHMS:
            self.addAlgorithm(algorithm())
