"""Regional inventories: many scenes through the whole pipeline, in this process or on Dask
(``pipeline.run_inventory``; command ``glacierseg inventory``, docs/regional.md)."""
