"""GlacierSeg core: QGIS-free engine (tiling, inference, post-processing, DEM split, metrics).

Every module here works on plain numpy arrays, rasterio datasets and file paths, so it
can be used and tested without QGIS. The Processing algorithms in
``processing_provider`` are thin adapters over these functions.
"""
