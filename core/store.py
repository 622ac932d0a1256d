"""The model store: GlacierSeg models installed by name in a folder (QGIS-free).

Layout: ``<folder>/<name>/model.onnx`` with ``model.json`` beside it (the model's contract,
checked and written at install time, so listing the store and showing model cards needs no
onnxruntime) and, once ``glacierseg:evaluate`` added scores, ``scores.json``. The plugin keeps
its user store in the QGIS profile and ships read-only models in ``bundled_models/`` of the
plugin folder (``scripts/package.py`` installs the sample model there).

Every install is atomic: the model is checked and copied into a hidden temporary folder of
the store, which is renamed to ``<name>`` only when everything succeeded; a failed or
cancelled install leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .contract import ModelContract, read_contract, sidecar_paths, with_score
from .errors import GlacierSegError, InputError, ModelContractError
from .progress import NullProgress, Progress, check_cancel, ensure_progress

MODEL_FILE = "model.onnx"
CONTRACT_FILE = "model.json"  # the contract as JSON; doubles as the ONNX file's sidecar
SCORES_FILE = "scores.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class InstalledModel:
    """One model of the store: its name, ONNX path, contract (with added scores) and whether it
    ships with the plugin (bundled models cannot be removed)."""

    name: str
    path: str
    contract: ModelContract
    bundled: bool = False


def model_name(text: str) -> str:
    """A store name from free text (a contract name or file stem): letters, digits, '.', '_', '-'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip()).strip("-._")[:64]
    return name or "model"


def sha256_of(path: str) -> str:
    """SHA-256 of the file, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_json(path: str, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelContractError(f"{path}: unreadable {what} ({exc}). Remove the model and install it again.") from None


class ModelStore:
    """Installed models in ``folder`` (writable) and in ``bundled`` folders (read-only)."""

    def __init__(self, folder: str, bundled: Sequence[str] = ()):
        self.folder = folder
        self.bundled = [b for b in bundled if b]

    # ------------------------------------------------------------------ reading
    def _roots(self) -> List[Tuple[str, bool]]:
        return [(self.folder, False)] + [(b, True) for b in self.bundled]

    def _load(self, directory: str, bundled: bool) -> Optional[InstalledModel]:
        path = os.path.join(directory, MODEL_FILE)
        card = os.path.join(directory, CONTRACT_FILE)
        if not (os.path.isfile(path) and os.path.isfile(card)):
            return None
        name = os.path.basename(directory)
        contract = ModelContract.from_dict(_read_json(card, "model contract"), f"{name}/{CONTRACT_FILE}")
        scores_path = os.path.join(directory, SCORES_FILE)
        for score in _read_json(scores_path, "score list") if os.path.isfile(scores_path) else []:
            contract = with_score(contract, score)
        return InstalledModel(name, path, contract, bundled)

    def models(self) -> List[InstalledModel]:
        """Installed models by name; a user model hides a bundled one of the same name."""
        found: Dict[str, InstalledModel] = {}
        for root, bundled in self._roots():
            if not os.path.isdir(root):
                continue
            for entry in sorted(os.listdir(root)):
                if entry.startswith(".") or entry in found:
                    continue
                model = self._load(os.path.join(root, entry), bundled)
                if model is not None:
                    found[entry] = model
        return [found[n] for n in sorted(found, key=str.lower)]

    def names(self) -> List[str]:
        """Names of the installed models."""
        return [m.name for m in self.models()]

    def get(self, name: str) -> InstalledModel:
        """The installed model of this name; InputError naming the installed ones if none."""
        for model in self.models():
            if model.name == name:
                return model
        known = ", ".join(self.names()) or "none"
        raise InputError(
            f"No installed model is called {name!r} (installed: {known}). Install it with "
            "'Install model' (glacierseg:install_model) or the Model manager, or give the path of an .onnx file."
        )

    def resolve(self, value: str) -> str:
        """Path of the model ``value`` names: an installed model's name, or an .onnx file path."""
        value = (value or "").strip()
        if not value:
            raise InputError("No model was given: choose an installed model by name or an .onnx file.")
        if os.path.isfile(value):
            return value
        if os.sep in value or (os.altsep and os.altsep in value) or value.lower().endswith(".onnx"):
            raise InputError(f"Model file not found: {value!r}. "
                             "Choose an existing .onnx file or an installed model by name.")
        return self.get(value).path

    # ------------------------------------------------------------------ writing
    def install(self, source: str, name: Optional[str] = None, replace: bool = False,
                progress: Optional[Progress] = None) -> InstalledModel:
        """Install the ONNX file ``source`` (contract embedded, or in a sidecar JSON beside it)
        as ``name`` (default: the contract's name, else the file name). Refuses a file without a
        valid contract, naming what is wrong, and an existing name unless ``replace``."""
        progress = ensure_progress(progress)
        if not os.path.isfile(source):
            raise InputError(f"Model file not found: {source!r}. Choose an existing .onnx file.")
        contract = read_contract(source)  # ModelContractError names the missing or bad keys
        name = name.strip() if name else model_name(contract.name or os.path.splitext(os.path.basename(source))[0])
        if not _NAME.match(name):
            raise InputError(f"Model name {name!r} is not usable: use letters, digits, '.', '_' or '-' (at most 64).")
        target = os.path.join(self.folder, name)
        if os.path.exists(target) and not replace:
            raise InputError(f"A model called {name!r} is already installed. Remove it first, or choose another name.")
        os.makedirs(self.folder, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".installing-{name}-", dir=self.folder)
        try:
            progress.push_info(f"Installing {os.path.basename(source)} as {name!r}.")
            _copy(source, os.path.join(staging, MODEL_FILE), progress)
            contract.to_json_file(os.path.join(staging, CONTRACT_FILE))
            check_cancel(progress)
            if os.path.exists(target):  # replace: move the old one aside, then swap
                old = os.path.join(self.folder, f".removing-{name}-{uuid.uuid4().hex[:8]}")
                os.rename(target, old)
                os.rename(staging, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        progress.set_progress(100)
        return self.get(name)

    def install_url(self, url: str, sha256: str, name: Optional[str] = None, replace: bool = False,
                    progress: Optional[Progress] = None, timeout: float = 60.0) -> InstalledModel:
        """Download an .onnx model from an http(s) ``url``, check its SHA-256 (required) and
        install it. A JSON sidecar is fetched from ``<url without .onnx>.json`` when the model
        carries no contract itself. Nothing is kept when any step fails."""
        progress = ensure_progress(progress)
        scheme = urllib.parse.urlparse(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise InputError(f"Model URL {url!r} must start with http:// or https://.")
        sha256 = (sha256 or "").strip().lower()
        if not _SHA256.match(sha256):
            raise InputError(
                "A model downloaded from a URL needs its SHA-256 checksum (64 hexadecimal digits), as "
                "published with the model: GlacierSeg only installs a download whose checksum matches."
            )
        file_name = os.path.basename(urllib.parse.urlparse(url).path) or "model.onnx"
        with tempfile.TemporaryDirectory(prefix=".download-", dir=_existing(self.folder)) as tmp:
            local = os.path.join(tmp, file_name if file_name.lower().endswith(".onnx") else "model.onnx")
            _download(url, local, progress, timeout)
            actual = sha256_of(local)
            if actual != sha256:
                raise InputError(
                    f"The download from {url} has SHA-256 {actual}, not the expected {sha256}: the file is not the "
                    "published model (or the checksum is wrong). Nothing was installed."
                )
            try:
                read_contract(local)
            except ModelContractError:
                sidecar_url = url[: -len(".onnx")] + ".json" if url.lower().endswith(".onnx") else None
                if sidecar_url is None or not _try_download(sidecar_url, sidecar_paths(local)[0], timeout):
                    raise
            return self.install(local, name or model_name(os.path.splitext(file_name)[0]), replace, progress)

    def remove(self, name: str) -> None:
        """Delete an installed user model (bundled models ship with the plugin and stay)."""
        model = self.get(name)
        if model.bundled:
            raise InputError(f"Model {name!r} ships with the plugin and cannot be removed.")
        old = os.path.join(self.folder, f".removing-{name}-{uuid.uuid4().hex[:8]}")
        os.rename(os.path.join(self.folder, name), old)
        shutil.rmtree(old, ignore_errors=True)

    def add_score(self, name: str, score: Mapping[str, Any]) -> InstalledModel:
        """Append ``score`` (a contract ``scores`` entry) to a user model's card (``scores.json``)."""
        model = self.get(name)
        if model.bundled:
            raise InputError(f"Model {name!r} ships with the plugin; install a copy under another name to score it.")
        with_score(model.contract, score)  # checks the entry, names what is wrong
        directory = os.path.dirname(model.path)
        path = os.path.join(directory, SCORES_FILE)
        scores = _read_json(path, "score list") if os.path.isfile(path) else []
        scores.append(dict(score))
        tmp = os.path.join(directory, f".{SCORES_FILE}.{uuid.uuid4().hex[:8]}")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(scores, fh, indent=2)
        os.replace(tmp, path)
        return self.get(name)


def model_card(contract: ModelContract) -> List[Tuple[str, str]]:
    """The model card as (label, text) rows, read from the contract: task, classes, bands and
    sensor, resolution, tile size, receptive field, training summary and scores."""
    rows = _contract_rows(contract)
    rows.append(("Training", _training_text(contract.training)))
    rows.extend(("Score", _score_text(s)) for s in contract.scores)
    if not contract.scores:
        rows.append(("Score", "none recorded"))
    return rows


def _contract_rows(contract: ModelContract) -> List[Tuple[str, str]]:
    """The card's rows of what the model reads and gives: name, description, task, classes,
    bands and sensor, resolution, tile size, receptive field, thresholds."""
    sensors = sorted({b.split(":")[0] for b in contract.source_bands if ":" in b})
    context = (f"{contract.receptive_field_px} px" if contract.receptive_field_px is not None
               else f"overlap {contract.overlap_px} px")
    rows = [
        ("Name", contract.name or "(unnamed)"),
        ("Task", contract.task),
        ("Classes", ", ".join(f"{c.name} = {c.value} ({c.color})" for c in contract.classes)),
        ("Bands", ", ".join(b.name for b in contract.bands)),
        ("Sensor", ", ".join(sensors) or "not stated (plain band names)"),
        ("Resolution", f"{contract.resolution_m:g} m"),
        ("Tile size", f"{contract.tile_size} px"),
        ("Receptive field", context),
        ("Thresholds", ", ".join(f"{k} {v:g}" for k, v in contract.thresholds.items()) or "0.5 (default)"),
    ]
    if contract.description:
        rows.insert(1, ("Description", contract.description))
    return rows


def _training_text(t: Optional[Dict[str, Any]]) -> str:
    """The training summary: network, loss, best epoch, rasters (what the contract records)."""
    if not t:
        return "none recorded"
    parts = [f"{t['network']}" if "network" in t else "", f"loss {t['loss']}" if "loss" in t else "",
             f"best epoch {t['best_epoch']} of {t['epochs']}" if "best_epoch" in t and "epochs" in t else "",
             f"on {', '.join(t['rasters'])}" if t.get("rasters") else ""]
    return ", ".join(p for p in parts if p) or json.dumps(t)[:200]


def _score_text(score: Dict[str, Any]) -> str:
    """One score: dataset (region, date): figures — method."""
    where = ", ".join(score[k] for k in ("region", "date") if score.get(k))
    figures = ", ".join(f"{k} {v:.3f}" for k, v in score["metrics"].items())
    how = f" — {score['method']}" if score.get("method") else ""
    return f"{score['dataset']}{f' ({where})' if where else ''}: {figures}{how}"


# ------------------------------------------------------------------ helpers
def _existing(folder: str) -> str:
    os.makedirs(folder, exist_ok=True)
    return folder


def _copy(source: str, target: str, progress: Progress) -> None:
    size = max(os.path.getsize(source), 1)
    done = 0
    with open(source, "rb") as src, open(target, "wb") as dst:
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            check_cancel(progress)
            dst.write(chunk)
            done += len(chunk)
            progress.set_progress(90 * done / size)


def _download(url: str, target: str, progress: Progress, timeout: float) -> None:
    progress.push_info(f"Downloading {url}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
            size = int(response.headers.get("Content-Length") or 0)
            done = 0
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                check_cancel(progress)
                out.write(chunk)
                done += len(chunk)
                if size:
                    progress.set_progress(50 * done / size)
    except GlacierSegError:
        raise
    except OSError as exc:  # URLError, HTTPError, timeouts
        raise InputError(f"Could not download {url}: {exc}. Check the address and the network connection.") from None


def _try_download(url: str, target: str, timeout: float) -> bool:
    """``_download`` that answers False (and keeps nothing) where the file cannot be fetched."""
    try:
        _download(url, target, NullProgress(), timeout)
        return True
    except InputError:
        if os.path.exists(target):
            os.remove(target)
        return False
