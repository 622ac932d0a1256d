"""The plugin zip's file list (scripts/package.py) and the licence it ships."""
from __future__ import annotations

import importlib.util

import pytest

from .helpers import ROOT


def _package_module():
    spec = importlib.util.spec_from_file_location("glacierseg_package", ROOT / "scripts" / "package.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_zip_lists_licence_changelog_and_plugin_but_no_tests():
    package = _package_module()
    files = set(package.plugin_files())
    assert {"LICENSE", "CHANGELOG.md", "metadata.txt", "__init__.py", "plugin.py"} <= files
    assert "processing_provider/provider.py" in files and "core/contract.py" in files
    assert not any(f.split("/")[0] in ("tests", "benchmarks", "scripts", ".ci") for f in files)
    assert set(package.REQUIRED) <= files


def test_licence_is_gpl2_or_later():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "either version 2 of the License, or\n(at your option) any later version." in text
    assert "SPDX-License-Identifier: GPL-2.0-or-later" in text
    assert "GNU GENERAL PUBLIC LICENSE\n                       Version 2, June 1991" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the full text, not only the notice


def test_zip_without_licence_is_refused(tmp_path, monkeypatch):
    package = _package_module()
    monkeypatch.setattr(package, "plugin_files", lambda: iter(["metadata.txt", "__init__.py", "plugin.py"]))
    with pytest.raises(SystemExit, match="LICENSE missing"):
        package.main(str(tmp_path / "glacierseg.zip"))
    assert not (tmp_path / "glacierseg.zip").exists()
