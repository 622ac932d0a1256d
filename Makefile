# GlacierSeg — set-up, demo, tests and packaging on Debian 12 (run as root or with sudo).
PY := .venv/bin/python
export QT_QPA_PLATFORM := offscreen

.PHONY: venv demo test test-fast lint package bench clean manual-screenshots

venv:            ## Debian QGIS 3.22 + .venv with pinned packages (idempotent)
	bash scripts/setup.sh

demo: venv       ## generate a sample scene + model and run glacierseg:segment through qgis_process
	$(PY) scripts/demo.py $(or $(OUT),demo_output)

test: venv       ## the whole test suite in real QGIS
	$(PY) -m pytest -q

test-fast: venv  ## everything but the tests marked slow
	$(PY) -m pytest -q -m "not slow"

lint: venv       ## ruff (whole tree) and mypy (core/), configured in pyproject.toml
	bash scripts/lint.sh

SHOTS := dialog_segment canvas_after_segment dialog_map_glaciers_band_ratio dialog_split_glaciers dialog_evaluate \
         dialog_prepare_correction_from_menu canvas_new_polygon_unclassified canvas_after_correction
manual-screenshots: ## copy the desktop tests' screenshots that docs/manual.md shows into docs/images/
	mkdir -p docs/images
	for s in $(SHOTS); do cp "$$(ls tests/artifacts/*/run/$$s.png | head -1)" docs/images/; done

package: venv    ## dist/glacierseg.zip (sample model installed) for Plugins › Manage and Install › Install from ZIP
	python3 scripts/package.py dist/glacierseg.zip

bench: venv      ## print the benchmarks' figures
	$(PY) benchmarks/bench_segment.py

clean:
	rm -rf .build dist demo_output
