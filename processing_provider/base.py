"""What every GlacierSeg algorithm shares: group, icon, dependency check, error mapping."""
from __future__ import annotations

import os
from typing import Any, Dict, Tuple

from qgis.core import QgsProcessingAlgorithm, QgsProcessingException
from qgis.PyQt.QtGui import QIcon

from ..core.deps import require
from ..core.errors import CancelledError, GlacierSegError
from ..core.progress import FeedbackProgress

ICON_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "icons", "glacierseg.svg")


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
