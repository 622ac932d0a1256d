"""glacierseg:install_model — install a GlacierSeg model into the model folder by name."""
from __future__ import annotations

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterString,
)

from .base import MODELS, GlacierSegAlgorithm, model_store


class InstallModelAlgorithm(GlacierSegAlgorithm):
    NAME = "install_model"
    DISPLAY_NAME = "Install model"
    GROUP = MODELS
    SHORT = "Install a GlacierSeg ONNX model (file, or URL with SHA-256) into the model folder by name."
    TAGS = ("model", "onnx", "install", "download", "deep learning", "model card")
    HELP_PAGE = "model-contract.md"
    REQUIRES = ("onnxruntime",)
    HELP = (
        "Installs a GlacierSeg model into GlacierSeg's model folder (in the QGIS profile), so that "
        "<i>Segment raster with model</i> offers it by name and the Model manager shows its card.<br><br>"
        "<b>Model file</b>: an .onnx file carrying the GlacierSeg model contract, or with a sidecar JSON "
        "(<i>&lt;model&gt;.json</i> or <i>model.json</i> beside it; see docs/model-contract.md).<br>"
        "<b>Model URL</b> (instead of a file): an http(s) address of an .onnx file; its <b>SHA-256</b> "
        "checksum, as published with the model, is required and checked before anything is installed. A "
        "sidecar is fetched from the same address with .json when the model carries no contract.<br>"
        "<b>Name</b>: empty takes the contract's name (else the file name).<br><br>"
        "A file without a valid contract is refused with the missing or wrong keys named; a failed "
        "install leaves nothing in the model folder."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFile("MODEL_FILE", "Model file (.onnx)", extension="onnx",
                                                     optional=True))
        self.addParameter(QgsProcessingParameterString("URL", "Model URL (http/https, instead of a file)",
                                                       optional=True))
        self.addParameter(QgsProcessingParameterString("SHA256", "SHA-256 of the download (required with a URL)",
                                                       optional=True))
        self.addParameter(QgsProcessingParameterString("NAME", "Name (empty: the model's own name)", optional=True))
        self.addParameter(QgsProcessingParameterBoolean("REPLACE", "Replace an installed model of that name",
                                                        defaultValue=False))
        self.addOutput(QgsProcessingOutputString("MODEL_NAME", "Installed model name"))
        self.addOutput(QgsProcessingOutputString("MODEL_PATH", "Installed model file"))

    def process(self, parameters, context, feedback, progress):
        path = self.parameterAsFile(parameters, "MODEL_FILE", context)
        url = self.parameterAsString(parameters, "URL", context).strip()
        name = self.parameterAsString(parameters, "NAME", context).strip() or None
        replace = self.parameterAsBool(parameters, "REPLACE", context)
        if bool(path) == bool(url):
            raise QgsProcessingException(
                "Give either a model file or a model URL (with its SHA-256), not both or neither.")
        store = model_store()
        if url:
            sha256 = self.parameterAsString(parameters, "SHA256", context)
            model = store.install_url(url, sha256, name, replace, progress)
        else:
            model = store.install(path, name, replace, progress)
        feedback.pushInfo(f"Installed model {model.name!r} ({model.contract.task}; "
                          f"classes {', '.join(model.contract.class_names)}) in {store.folder}.")
        return {"MODEL_NAME": model.name, "MODEL_PATH": model.path}
