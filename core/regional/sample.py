"""Overlapping scenes cut from the generated mountain region (``core.sample_data``), for the
regional pipeline's tests and benchmark: a 2×2 layout (or n×n) with overlaps, glaciers crossing
scene edges, dates in the file names and one scene with a nodata gap inside an overlap."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List

from ..sample_data import SampleScene, make_scene


@dataclass(frozen=True)
class RegionScenes:
    """The generated region and the paths of its scenes."""

    region: SampleScene  # the whole region: its image is the mosaic of the scenes
    scenes: List[str]
    gap_scene: str  # the scene with a nodata gap (covered by its neighbour)


def make_region_scenes(out_dir: str, size: int = 256, tiles: int = 2, overlap: int = 24, seed: int = 0) -> RegionScenes:
    """Write the region (``make_scene``) and ``tiles``×``tiles`` scenes that cover it, each
    overlapping its neighbours by ``overlap`` pixels; scene (0, 0) has a nodata gap in its
    overlap with scene (0, 1), across the valley glacier."""
    import rasterio
    from rasterio.windows import Window

    region = make_scene(os.path.join(out_dir, "region"), size=size, seed=seed)
    step = (size - overlap) // tiles
    starts = [i * step for i in range(tiles)]
    width = size - starts[-1]  # every scene has the same size; the last reaches the region's edge
    scenes = []
    with rasterio.open(region.image) as src:
        profile = src.profile
        descriptions = src.descriptions
        for r, row0 in enumerate(starts):
            for c, col0 in enumerate(starts):
                window = Window(col0, row0, width, width)
                data = src.read(window=window)
                if (r, c) == (0, 0):
                    g0 = starts[1] + 2  # inside the overlap with scene (0, 1)
                    data[:, int(0.35 * size):int(0.65 * size), g0:width - 2] = 0
                path = os.path.join(out_dir, f"S2_{r}{c}_2023080{1 + r * tiles + c}.tif")
                p = dict(profile, width=width, height=width, transform=src.window_transform(window))
                with rasterio.open(path, "w", **p) as dst:
                    dst.write(data)
                    for i, name in enumerate(descriptions, start=1):
                        dst.set_band_description(i, name)
                scenes.append(path)
    return RegionScenes(region, scenes, scenes[0])
