"""The GlacierSeg model contract: the one module that reads and writes it.

A GlacierSeg model is an ONNX file whose ``metadata_props`` hold JSON values for the
keys below (or an ONNX file with a sidecar JSON holding them). ``docs/model-contract.md``
documents every key; this module is its executable form.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .deps import require
from .errors import InputError, ModelContractError

CONTRACT_VERSION = "1"
TASKS = ("glacier", "glacial_lake", "landslide", "custom")
ACTIVATIONS = ("sigmoid", "softmax", "none")
REQUIRED_KEYS = (
    "glacierseg_version",
    "task",
    "classes",
    "bands",
    "resolution_m",
    "tile_size",
    "activation",
    "thresholds",
)
OPTIONAL_KEYS = (
    "receptive_field_px",
    "overlap_px",
    "precedence",
    "background",
    "name",
    "description",
    "training",
    "scores",
)
SCORE_TEXT_KEYS = ("dataset", "region", "date", "method")
_HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_FEATURE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\((.*)\)\s*$")


# Colours of classes whose table gives none (vectorize's class tables, training class specs,
# outlines prepared for correction): ColorBrewer's 12-class "Paired" colours, dark ones first, cycled.
PALETTE = ("#1f78b4", "#e31a1c", "#33a02c", "#ff7f00", "#6a3d9a", "#b15928", "#a6cee3", "#fb9a99",
           "#b2df8a", "#fdbf6f", "#cab2d6", "#ffff99")


@dataclass(frozen=True)
class ClassInfo:
    """One output class: its name, the value it takes in the class raster and its colour."""

    name: str
    value: int
    color: str

    def rgb(self) -> Tuple[int, int, int]:
        """The colour as (red, green, blue), 0-255."""
        return tuple(int(self.color[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def canonical_band_name(name: str) -> str:
    """'S2:B04' / 'B04' / 'SR_B4' / 'band 4' / 'b4' -> 'B4' ('B8A' stays 'B8A'); other names
    upper-cased without the sensor prefix (for matching raster band descriptions)."""
    name = name.strip().upper().split(":")[-1].replace(" ", "")
    m = re.search(r"B(?:AND)?0*(\d+)([A-Z]?)$", name)
    return f"B{m.group(1)}{m.group(2)}" if m else name


GLACIER_WORDS = ("glacier", "glaciers", "ice", "icefield", "firn")


def is_glacier_class(name: str) -> bool:
    """Whether a class name means glacier ice ('glacier', 'clean_ice', 'debris_covered_glacier'),
    not lakes, water or other classes ('glacial_lake', 'landslide'): the default class filter of the
    glacier-inventory steps."""
    words = re.split(r"[^a-z]+", name.lower())
    return any(w in GLACIER_WORDS for w in words) and not any(w in ("lake", "lakes", "water") for w in words)


def class_colormap(classes: Sequence[ClassInfo], background: ClassInfo) -> Dict[int, Tuple[int, int, int, int]]:
    """GDAL colour table of a class raster: class colours, background transparent."""
    colormap = {c.value: (*c.rgb(), 255) for c in classes}
    colormap.setdefault(background.value, (*background.rgb(), 0))
    return colormap


@dataclass(frozen=True)
class InputSpec:
    """One model input channel: a sensor band (``S2:B04``, ``DEM``) or a derived feature
    (``NDSI(S2:B03,S2:B11)``), with the scaling applied to it in the raster's native units:
    ``x * scale + offset`` or ``(x - mean) / std``."""

    name: str
    scale: float = 1.0
    offset: float = 0.0
    mean: Optional[float] = None
    std: Optional[float] = None
    training_range: Optional[Tuple[float, float]] = None  # 1st–99th percentile of the scaled training pixels

    @property
    def feature(self) -> Optional[Tuple[str, Tuple[str, ...]]]:
        """``(function, argument bands)`` when this input is a derived feature, else None."""
        m = _FEATURE.match(self.name)
        if not m:
            return None
        args = tuple(a.strip() for a in m.group(2).split(",") if a.strip())
        return m.group(1).upper(), args

    @property
    def source_bands(self) -> Tuple[str, ...]:
        """Sensor bands this input reads (the band itself, or a feature's arguments)."""
        f = self.feature
        return f[1] if f else (self.name,)

    def normalise(self, x: np.ndarray) -> np.ndarray:
        """Scaled float32 channel from raw values: ``(x - mean) / std``, else ``x * scale + offset``."""
        if self.mean is not None:
            assert self.std is not None  # from_dict requires std with mean
            return ((x - self.mean) / self.std).astype(np.float32, copy=False)
        return (x * self.scale + self.offset).astype(np.float32, copy=False)

    def to_json(self) -> Dict[str, Any]:
        """This input as its entry in the contract's ``bands`` list."""
        d: Dict[str, Any] = {"name": self.name}
        if self.mean is not None:
            d.update(mean=self.mean, std=self.std)
        else:
            d.update(scale=self.scale, offset=self.offset)
        if self.training_range is not None:
            d["range"] = [float(self.training_range[0]), float(self.training_range[1])]
        return d


@dataclass(frozen=True)
class ModelContract:
    """Everything GlacierSeg needs to know to run a model on a raster."""

    task: str
    classes: Tuple[ClassInfo, ...]
    bands: Tuple[InputSpec, ...]
    resolution_m: float
    tile_size: int
    activation: str
    thresholds: Dict[str, float]
    receptive_field_px: Optional[int] = None
    overlap_px: Optional[int] = None
    precedence: Tuple[str, ...] = ()
    background: ClassInfo = ClassInfo("background", 0, "#000000")
    name: str = ""
    description: str = ""
    training: Dict[str, Any] = field(default_factory=dict)
    scores: Tuple[Dict[str, Any], ...] = ()
    glacierseg_version: str = CONTRACT_VERSION

    # ----------------------------------------------------------------- derived
    @property
    def class_names(self) -> List[str]:
        """Class names in output-channel order."""
        return [c.name for c in self.classes]

    @property
    def source_bands(self) -> List[str]:
        """Distinct sensor bands the model reads, in first-use order."""
        seen: List[str] = []
        for spec in self.bands:
            for b in spec.source_bands:
                if b not in seen:
                    seen.append(b)
        return seen

    @property
    def default_overlap_px(self) -> int:
        """Overlap between tiles: the stated overlap, else the receptive field (so the blend
        window, zero within half of it at each edge, leaves every output pixel whole context)."""
        if self.overlap_px is not None:
            return int(self.overlap_px)
        return int(self.receptive_field_px or 0)

    def precedence_order(self) -> List[ClassInfo]:
        """Classes in the order they win where several are predicted (first wins)."""
        by_name = {c.name: c for c in self.classes}
        order = [by_name[n] for n in self.precedence]
        return order + [c for c in self.classes if c.name not in self.precedence]

    def threshold(self, name: str) -> float:
        """Probability threshold of class ``name`` (0.5 where the contract gives none)."""
        return float(self.thresholds.get(name, 0.5))

    def classify(self, probs: np.ndarray, thresholds: Optional[Mapping[str, float]] = None) -> np.ndarray:
        """uint8 class values from (C, H, W) probabilities with this model's rule
        (``decide_classes``) and its thresholds, or ``thresholds`` where given."""
        chosen = self.thresholds if thresholds is None else thresholds
        return decide_classes(probs, self.classes, self.background.value, self.precedence, chosen, np.uint8)

    # ------------------------------------------------------------ (de)serialise
    def to_metadata(self) -> Dict[str, str]:
        """Contract as ONNX ``metadata_props``: every value a JSON string."""
        d: Dict[str, Any] = {
            "glacierseg_version": self.glacierseg_version,
            "task": self.task,
            "classes": [c.__dict__ for c in self.classes],
            "bands": [b.to_json() for b in self.bands],
            "resolution_m": self.resolution_m,
            "tile_size": self.tile_size,
            "activation": self.activation,
            "thresholds": self.thresholds,
            "precedence": list(self.precedence),
            "background": self.background.__dict__,
        }
        if self.receptive_field_px is not None:
            d["receptive_field_px"] = self.receptive_field_px
        if self.overlap_px is not None:
            d["overlap_px"] = self.overlap_px
        for key in ("name", "description", "training"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        if self.scores:
            d["scores"] = list(self.scores)
        return {k: json.dumps(v) for k, v in d.items()}

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], source: str = "model") -> "ModelContract":
        """Parse ``metadata_props`` (JSON-string values); errors name the offending key."""
        values: Dict[str, Any] = {}
        for key, raw in meta.items():
            if key in REQUIRED_KEYS or key in OPTIONAL_KEYS:
                try:
                    values[key] = json.loads(raw) if isinstance(raw, str) else raw
                except json.JSONDecodeError as exc:
                    raise ModelContractError(
                        f"{source}: metadata key '{key}' is not valid JSON ({exc.msg}): {raw!r}"
                    ) from None
        return cls.from_dict(values, source)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "model") -> "ModelContract":
        """Parse a contract given as plain values; errors name the offending key and the model."""
        _check_keys(d, source)
        p = _Parser(source)
        version = p.version(d)
        classes = p.classes(d)
        names = [c.name for c in classes]
        bands = p.bands(d)
        activation = p.choice(d, "activation", ACTIVATIONS)
        task = p.choice(d, "task", TASKS)
        thresholds = p.thresholds(d, names)
        precedence = p.precedence(d, names)
        background = p.background(d, classes)
        return cls(
            glacierseg_version=version,
            task=task,
            classes=classes,
            bands=bands,
            resolution_m=p.positive(d, "resolution_m"),
            tile_size=int(p.positive(d, "tile_size", integer=True)),
            activation=activation,
            thresholds=thresholds,
            receptive_field_px=p.optional_int(d, "receptive_field_px"),
            overlap_px=p.optional_int(d, "overlap_px"),
            precedence=precedence,
            background=background,
            name=str(d.get("name", "")),
            description=str(d.get("description", "")),
            training=dict(d.get("training", {})),
            scores=tuple(p.score(s, f"scores[{i}]") for i, s in enumerate(p.list(d, "scores", default=[]))),
        )

    def to_json_file(self, path: str) -> None:
        """Write the contract as a sidecar JSON (plain values, not JSON strings)."""
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({k: json.loads(v) for k, v in self.to_metadata().items()}, fh, indent=2)


def _check_keys(d: Mapping[str, Any], source: str) -> None:
    """The required keys are present, and something to choose the tile overlap from."""
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        raise ModelContractError(
            f"{source}: missing model contract key(s) {', '.join(repr(k) for k in missing)}. "
            "See docs/model-contract.md for the keys a GlacierSeg model must carry."
        )
    if "receptive_field_px" not in d and "overlap_px" not in d:
        raise ModelContractError(
            f"{source}: missing model contract key 'receptive_field_px' (or 'overlap_px'): "
            "GlacierSeg needs it to choose the tile overlap."
        )


class _Parser:
    """Small typed accessors whose errors name the key and the model."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, what: str) -> ModelContractError:
        return ModelContractError(f"{self.source}: key '{key}' {what}.")

    def string(self, d: Mapping[str, Any], key: str) -> str:
        v = d[key]
        if not isinstance(v, str) or not v:
            raise self.fail(key, f"must be a non-empty string, got {v!r}")
        return v

    def list(self, d: Mapping[str, Any], key: str, default: Any = None) -> list:
        v = d.get(key, default)
        if not isinstance(v, list):
            raise self.fail(key, f"must be a JSON list, got {type(v).__name__}")
        return v

    def positive(self, d: Mapping[str, Any], key: str, integer: bool = False) -> float:
        v = d[key]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
        if not ok or (integer and int(v) != v):
            raise self.fail(key, f"must be a positive {'integer' if integer else 'number'}, got {v!r}")
        return float(v)

    def optional_int(self, d: Mapping[str, Any], key: str) -> Optional[int]:
        if key not in d or d[key] is None:
            return None
        v = d[key]
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise self.fail(key, f"must be a non-negative integer, got {v!r}")
        return v

    def version(self, d: Mapping[str, Any]) -> str:
        version = self.string(d, "glacierseg_version")
        if version != CONTRACT_VERSION:
            raise ModelContractError(
                f"{self.source}: key 'glacierseg_version' is {version!r}; this GlacierSeg reads "
                f"contract version {CONTRACT_VERSION!r}. Update the plugin or re-export the model."
            )
        return version

    def choice(self, d: Mapping[str, Any], key: str, allowed: Sequence[str]) -> str:
        value = self.string(d, key)
        if value not in allowed:
            raise self.fail(key, f"is {value!r}; expected one of {', '.join(allowed)}")
        return value

    def classes(self, d: Mapping[str, Any]) -> Tuple[ClassInfo, ...]:
        classes = tuple(self.class_info(c, f"classes[{i}]") for i, c in enumerate(self.list(d, "classes")))
        if not classes:
            raise self.fail("classes", "must list at least one class")
        names = [c.name for c in classes]
        if len(set(names)) != len(names) or len({c.value for c in classes}) != len(classes):
            raise self.fail("classes", f"has duplicate names or values: {names}")
        return classes

    def bands(self, d: Mapping[str, Any]) -> Tuple[InputSpec, ...]:
        bands = tuple(self.input_spec(b, f"bands[{i}]") for i, b in enumerate(self.list(d, "bands")))
        if not bands:
            raise self.fail("bands", "must list at least one model input")
        return bands

    def thresholds(self, d: Mapping[str, Any], names: Sequence[str]) -> Dict[str, float]:
        thresholds = d["thresholds"]
        if not isinstance(thresholds, dict) or not all(
            isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in thresholds.values()
        ):
            raise self.fail("thresholds", "must be an object mapping class names to numbers in [0, 1]")
        self.known("thresholds", thresholds, names)
        return {k: float(v) for k, v in thresholds.items()}

    def precedence(self, d: Mapping[str, Any], names: Sequence[str]) -> Tuple[str, ...]:
        precedence = tuple(self.list(d, "precedence", default=[]))
        self.known("precedence", precedence, names)
        return precedence

    def known(self, key: str, given: Iterable[str], names: Sequence[str]) -> None:
        unknown = [n for n in given if n not in names]
        if unknown:
            raise self.fail(key, f"names unknown class(es) {unknown}; classes are {list(names)}")

    def background(self, d: Mapping[str, Any], classes: Sequence[ClassInfo]) -> ClassInfo:
        if "background" not in d:
            return ClassInfo("background", 0, "#000000")
        background = self.class_info(d["background"], "background")
        if background.value in {c.value for c in classes} and background.name not in {c.name for c in classes}:
            raise self.fail("background", f"uses value {background.value}, taken by a class")
        return background

    def class_info(self, c: Any, key: str) -> ClassInfo:
        if not isinstance(c, dict) or not {"name", "value", "color"} <= set(c):
            raise self.fail(key, "must be an object with 'name', 'value' and 'color'")
        if not isinstance(c["value"], int) or not 0 <= c["value"] <= 254:
            raise self.fail(key, f"'value' must be an integer 0–254 (255 is nodata), got {c['value']!r}")
        if not isinstance(c["color"], str) or not _HEX_COLOR.match(c["color"]):
            raise self.fail(key, f"'color' must be '#rrggbb', got {c['color']!r}")
        return ClassInfo(str(c["name"]), int(c["value"]), c["color"])

    def score(self, s: Any, key: str) -> Dict[str, Any]:
        """One entry of ``scores``: ``dataset`` (required), ``region``, ``date``, ``method``
        (strings) and ``metrics`` (name -> number; at least one)."""
        if not isinstance(s, dict) or not isinstance(s.get("dataset"), str) or not s["dataset"]:
            raise self.fail(key, "must be an object with a non-empty 'dataset' name and 'metrics'")
        metrics = self.metrics(s.get("metrics"), key)
        bad = [k for k in SCORE_TEXT_KEYS if k in s and not isinstance(s[k], str)]
        if bad:
            raise self.fail(key, f"{', '.join(repr(k) for k in bad)} must be text")
        entry = {k: s[k] for k in SCORE_TEXT_KEYS if s.get(k)}
        entry["metrics"] = metrics
        return entry

    def metrics(self, metrics: Any, key: str) -> Dict[str, float]:
        """A score's ``metrics``: a non-empty object of numbers."""
        if not isinstance(metrics, dict) or not metrics or not all(_is_number(v) for v in metrics.values()):
            raise self.fail(key, "'metrics' must map metric names to numbers, e.g. {\"iou\": 0.81}")
        return {str(k): float(v) for k, v in metrics.items()}

    def input_spec(self, b: Any, key: str) -> InputSpec:
        if not isinstance(b, dict) or "name" not in b:
            raise self.fail(key, "must be an object with 'name' and a scaling ('scale'/'offset' or 'mean'/'std')")
        r = self.training_range(b.get("range"), key)
        if "mean" in b or "std" in b:
            if not {"mean", "std"} <= set(b) or not b["std"]:
                raise self.fail(key, "needs both 'mean' and a non-zero 'std'")
            return InputSpec(str(b["name"]), mean=float(b["mean"]), std=float(b["std"]), training_range=r)
        if "scale" not in b:
            raise self.fail(key, "needs a scaling: 'scale' (and optional 'offset') or 'mean' and 'std'")
        return InputSpec(str(b["name"]), scale=float(b["scale"]), offset=float(b.get("offset", 0.0)), training_range=r)

    def training_range(self, r: Any, key: str) -> Optional[Tuple[float, float]]:
        """An input's ``range``: [low, high], finite, low <= high (or absent)."""
        if r is None:
            return None
        ok = isinstance(r, list) and len(r) == 2 and all(_is_number(v) and math.isfinite(v) for v in r)
        if not ok or r[0] > r[1]:
            raise self.fail(key, f"'range' must be [low, high], two finite numbers with low <= high, got {r!r}")
        return float(r[0]), float(r[1])


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ------------------------------------------------------------------ input ranges
RANGE_PERCENTILES = (1.0, 99.0)  # the 'range' of an input: these percentiles of its scaled values
RANGE_SPREAD_FACTOR = 20.0  # a spread this many times smaller or larger than in training is "far"


def scaled_range(values: np.ndarray) -> Tuple[float, float]:
    """The ``RANGE_PERCENTILES`` of scaled input values (what the contract's 'range' records)."""
    lo, hi = np.percentile(values, RANGE_PERCENTILES)
    return float(lo), float(hi)


def input_range_warnings(bands: Sequence[InputSpec], samples: Sequence[np.ndarray]) -> List[str]:
    """One warning per input whose scaled values (``samples[k]``, valid pixels of input k) lie
    far from the range recorded at training: their median outside the training range widened
    by its own width on each side, or a spread ``RANGE_SPREAD_FACTOR`` times smaller or larger.
    Typical cause: reflectance 0–1 given to a model trained on digital numbers ×10⁴, or the reverse."""
    out = []
    for spec, v in zip(bands, samples):
        if spec.training_range is None or v.size == 0:
            continue
        lo, hi = spec.training_range
        width = max(hi - lo, 1e-12)
        p_lo, p_hi = scaled_range(v)
        median = float(np.median(v))
        spread = max(p_hi - p_lo, 1e-12)
        if (not lo - width <= median <= hi + width
                or not 1 / RANGE_SPREAD_FACTOR <= spread / width <= RANGE_SPREAD_FACTOR):
            out.append(
                f"Warning: input {spec.name} scaled by the model spans {p_lo:.4g}…{p_hi:.4g} (median {median:.4g}) "
                f"but the model was trained on {lo:.4g}…{hi:.4g}: the raster's values are probably in other units "
                "(e.g. reflectance 0–1 instead of digital numbers ×10000). Check the raster's scaling; the result "
                "is likely wrong.")
    return out


# ------------------------------------------------------------------ model files
def sidecar_paths(model_path: str) -> List[str]:
    """Where a sidecar contract may live: ``<model>.json`` then ``model.json`` beside it."""
    stem, _ = os.path.splitext(model_path)
    return [stem + ".json", os.path.join(os.path.dirname(model_path), "model.json")]


def check_model_file(path: str) -> None:
    """``InputError`` unless ``path`` is an existing file."""
    if not path or not os.path.isfile(path):
        raise InputError(f"Model file not found: {path!r}. Choose an existing .onnx file.")


def unreadable_model_error(path: str, exc: Exception) -> ModelContractError:
    """The error for an ONNX file onnxruntime cannot open."""
    return ModelContractError(
        f"{os.path.basename(path)} is not a readable ONNX model ({str(exc).splitlines()[0][:200]}). "
        "Choose a .onnx file exported by GlacierSeg (or one with a GlacierSeg sidecar JSON)."
    )


def read_onnx_metadata(path: str) -> Dict[str, str]:
    """The model's ``metadata_props`` as a dict, read with an onnxruntime CPU session (errors only
    in onnxruntime's log). Running a model is ``core.runtime``'s; reading its contract is here."""
    require("onnxruntime")
    import onnxruntime as ort

    check_model_file(path)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own (pybind) exception types
        raise unreadable_model_error(path, exc) from None
    return dict(session.get_modelmeta().custom_metadata_map)


def read_contract(model_path: str, embedded: Optional[Mapping[str, str]] = None) -> ModelContract:
    """Contract of an ONNX file: from its metadata, else from a sidecar JSON.

    ``embedded`` is the model's ``metadata_props`` when the caller already has them
    (e.g. from an onnxruntime session); otherwise they are read with onnxruntime.
    """
    name = os.path.basename(model_path)
    if embedded is None:
        embedded = read_onnx_metadata(model_path)
    if "glacierseg_version" in embedded:
        return ModelContract.from_metadata(embedded, name)
    for path in sidecar_paths(model_path):
        if os.path.exists(path):
            return read_contract_json(path)
    missing = [k for k in REQUIRED_KEYS if k not in embedded]
    raise ModelContractError(
        f"{name}: not a GlacierSeg model: its ONNX metadata has no 'glacierseg_version' key and no sidecar "
        f"{os.path.basename(sidecar_paths(model_path)[0])} or model.json was found beside it (missing model "
        f"contract key(s): {', '.join(repr(k) for k in missing)}). Export it with GlacierSeg (models/export.py) "
        "or add a sidecar JSON with these keys as described in docs/model-contract.md."
    )


def read_contract_json(path: str, advice: str = "") -> ModelContract:
    """The contract in a JSON file (a model's sidecar or a class table); ``advice`` (``"; ..."``)
    ends the message when the file is not valid JSON."""
    try:
        with open(path, encoding="utf-8") as fh:
            d = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ModelContractError(
            f"{os.path.basename(path)}: not valid JSON ({exc.msg}, line {exc.lineno}){advice}."
        ) from None
    return ModelContract.from_dict(d, os.path.basename(path))


def with_score(contract: ModelContract, score: Mapping[str, Any]) -> ModelContract:
    """``contract`` with ``score`` (checked like a ``scores`` entry) appended to its scores."""
    entry = _Parser(contract.name or "model").score(dict(score), f"scores[{len(contract.scores)}]")
    return dataclasses.replace(contract, scores=contract.scores + (entry,))


def write_contract(onnx_path: str, contract: ModelContract) -> None:
    """Embed the contract into an ONNX file's ``metadata_props`` (needs the ``onnx`` package)."""
    import onnx

    model = onnx.load(onnx_path)
    keep = [p for p in model.metadata_props if p.key not in REQUIRED_KEYS + OPTIONAL_KEYS]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in contract.to_metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, onnx_path)


# ------------------------------------------------------------------ class decision
def activate(raw: np.ndarray, activation: str) -> np.ndarray:
    """Probabilities from the model's raw (N, C, H, W) output with the contract's ``activation``."""
    raw = raw.astype(np.float32, copy=False)
    if activation == "sigmoid":  # 0.5 * (1 + tanh(0.5 * raw)): numerically stable logistic, in one buffer
        out = np.multiply(raw, np.float32(0.5))
        np.tanh(out, out=out)
        out += np.float32(1.0)
        out *= np.float32(0.5)
        return out
    if activation == "softmax":
        e = np.exp(raw - raw.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return raw


def parse_thresholds(text: str, contract: ModelContract) -> Dict[str, float]:
    """'0.4' (all classes) or 'glacier=0.4,debris=0.6' -> {class: threshold}, checked against
    the contract's classes ({} for empty text: the contract's own thresholds apply)."""
    text = (text or "").strip()
    if not text:
        return {}
    result = _threshold_values(text, contract.class_names)
    unknown = [n for n in result if n not in contract.class_names]
    if unknown:
        raise InputError(
            f"Threshold override names unknown class(es) {unknown}; the model's classes are {contract.class_names}."
        )
    bad = [n for n, v in result.items() if not 0.0 <= v <= 1.0]
    if bad:
        raise InputError(f"Threshold override for {bad} must lie between 0 and 1.")
    return result


def _threshold_values(text: str, class_names: Sequence[str]) -> Dict[str, float]:
    """The numbers of a threshold override: one for every class, or ``name=value`` pairs."""
    try:
        if "=" not in text:
            value = float(text)
            return {name: value for name in class_names}
        result = {}
        for part in text.split(","):
            name, number = part.split("=")
            result[name.strip()] = float(number)
        return result
    except ValueError:
        raise InputError(
            f"Threshold override {text!r} is not a number or a list like 'glacier=0.4,lake=0.6'."
        ) from None


def decide_classes(probs: np.ndarray, classes: Sequence[ClassInfo], background: int, precedence: Sequence[str],
                   thresholds: Mapping[str, float], dtype=np.uint8) -> np.ndarray:
    """Class values from (C, H, W) probabilities, band k for ``classes[k]``.

    Exclusive classes (the class list includes the background) take the most probable
    class, demoted to background when below an explicit threshold. Independent classes
    (one channel per foreground class) take the first class in ``precedence`` order whose
    probability reaches its threshold (default 0.5; e.g. debris-covered ice wins over clean ice).
    """
    values = [c.value for c in classes]
    if background in values:
        best = probs.argmax(axis=0)
        out = np.asarray(values, dtype)[best]
        for k, c in enumerate(classes):
            if c.name in thresholds:
                out[(best == k) & (probs[k] < thresholds[c.name])] = background
        return out
    out = np.full(probs.shape[1:], background, dtype)
    index = {c.name: k for k, c in enumerate(classes)}
    order = [n for n in precedence if n in index] + [c.name for c in classes if c.name not in precedence]
    for name in reversed(order):
        k = index[name]
        out[probs[k] >= thresholds.get(name, 0.5)] = classes[k].value
    return out
