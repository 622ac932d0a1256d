"""The run manifest: what each scene and step was made from (input hashes) and what came of it.

Kept as JSON beside the output GeoPackage (``<output>.manifest.json``) and rewritten atomically
after every finished scene and step, so a killed run loses at most the work in flight; a rerun
skips every entry whose inputs hash is unchanged and whose product file is still there."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Dict, Optional

VERSION = 1
HASH_CHUNK = 4 * 2**20


def file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes; of the name for a GDAL dataset name that is no local file
    (``/vsicurl/…``, ``GPKG:…``): a remote file is identified by its address."""
    if not os.path.isfile(path):
        return "name:" + hashlib.sha256(path.encode()).hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def digest(*parts: Any) -> str:
    """SHA-256 of values that JSON can write (the inputs of one step)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class Manifest:
    """``{"version", "files": {path: {size, mtime_ns, sha256}}, "scenes": {path: {...}},
    "steps": {name: {"inputs": hash, ...}}}``, loaded from and saved to ``path``."""

    def __init__(self, path: str):
        self.path = path
        self.data: Dict[str, Any] = {"version": VERSION, "files": {}, "scenes": {}, "steps": {}}
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                loaded = json.load(f)
            if loaded.get("version") == VERSION:
                self.data = loaded

    def file_hash(self, path: str) -> str:
        """``file_sha256(path)``, read again only when the file's size or time changed."""
        if not os.path.isfile(path):
            return file_sha256(path)
        st = os.stat(path)
        known = self.data["files"].get(path)
        if known and known["size"] == st.st_size and known["mtime_ns"] == st.st_mtime_ns:
            return known["sha256"]
        sha = file_sha256(path)
        self.data["files"][path] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
        return sha

    def scene(self, path: str) -> Dict[str, Any]:
        """The entry of scene ``path`` ({} when none)."""
        return self.data["scenes"].get(path, {})

    def set_scene(self, path: str, entry: Dict[str, Any]) -> None:
        """Record scene ``path`` and save."""
        self.data["scenes"][path] = entry
        self.save()

    def step(self, name: str) -> Dict[str, Any]:
        """The entry of step ``name`` ({} when none)."""
        return self.data["steps"].get(name, {})

    def set_step(self, name: str, inputs: str, **result: Any) -> None:
        """Record step ``name`` (its inputs hash and ``result``) and save."""
        self.data["steps"][name] = dict(result, inputs=inputs)
        self.save()

    def done(self, name: str, inputs: str, product: Optional[str] = None) -> bool:
        """Whether step ``name`` already ran on ``inputs`` and its product file is unchanged."""
        entry = self.step(name)
        if entry.get("inputs") != inputs:
            return False
        if product is None:
            return True
        return os.path.isfile(product) and entry.get("product_sha256") == self.file_hash(product)

    def save(self) -> None:
        """Write the manifest atomically (temporary file, then rename)."""
        tmp = f"{self.path}.partial-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.data, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)
