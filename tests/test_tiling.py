"""core.tiling on its own: tile layout, overlap and edges, the blend window, the blend
accumulator (weights sum, strip = whole raster), reflection and test-time transforms."""
import numpy as np
import pytest

from glacierseg.core.tiling import (
    BlendAccumulator,
    TileGrid,
    apply_transform,
    dihedral_transforms,
    invert_transform,
    reflect_index,
)


def positive_span(grid, origin):
    """First and last raster index a tile at ``origin`` gives positive weight to."""
    return origin + grid.margin, origin + grid.tile - 1 - grid.margin


@pytest.mark.parametrize("length,tile,overlap,half_rf", [
    (100, 32, 8, 3), (100, 32, 8, 10), (1, 16, 4, 2), (31, 32, 0, 0), (257, 64, 30, 7), (64, 64, 16, 8),
])
def test_origins_cover_every_pixel_with_the_stride_and_no_spare_tile(length, tile, overlap, half_rf):
    grid = TileGrid.plan(length, length, tile, overlap, half_rf)
    rows = grid.row_origins
    assert grid.margin == min(half_rf, grid.overlap // 2)
    assert rows[0] == -grid.margin  # the raster's first pixel is where the window is already positive
    assert all(b - a == grid.stride == tile - grid.overlap for a, b in zip(rows, rows[1:]))
    covered = np.zeros(length, bool)
    for o in rows:
        first, last = positive_span(grid, o)
        covered[max(first, 0) : last + 1] = True
    assert covered.all()
    if len(rows) > 1:  # the last tile is needed: the one before ends short of the raster's end
        assert positive_span(grid, rows[-2])[1] < length - 1
    assert len(grid) == len(rows) * len(grid.col_origins)


def test_plan_clamps_overlap_and_refuses_empty_tiles():
    grid = TileGrid.plan(50, 80, 16, 40, 5)
    assert grid.overlap == 15 and grid.stride == 1 and grid.margin == 5
    assert TileGrid.plan(50, 80, 16, -3, 5).overlap == 0
    assert len(TileGrid.plan(50, 80, 16, 4, 2).col_origins) != len(TileGrid.plan(50, 80, 16, 4, 2).row_origins)
    with pytest.raises(ValueError, match="tile size"):
        TileGrid.plan(10, 10, 0, 0, 0)


def test_window_is_zero_in_the_margin_and_one_inside():
    grid = TileGrid.plan(200, 200, 32, 12, 3)  # margin 3, ramp 6
    w1 = grid._window_1d()
    assert w1.dtype == np.float32 and np.array_equal(w1, w1[::-1])
    assert (w1[:3] == 0).all() and (w1[3:9] > 0).all() and (w1[3:9] < 1).all() and (w1[9:-9] == 1).all()
    assert np.all(np.diff(w1[:16]) >= 0)
    window = grid.window()
    assert window.shape == (32, 32) and np.array_equal(window, np.outer(w1, w1))


def run_accumulator(grid, image, valid, depth=None, order=None):
    """Blend tiles cut from ``image`` (C, H, W) by reflection, as the tile reader does; returns the
    assembled output, its covered mask and the windows written."""
    channels = image.shape[0]
    out = np.full((channels, grid.height, grid.width), np.nan, np.float32)
    covered_out = np.zeros((grid.height, grid.width), bool)
    windows = []

    def write(values, covered, window):
        r, c, h, w = int(window.row_off), int(window.col_off), int(window.height), int(window.width)
        assert values.shape == (channels, h, w) and covered.shape == (h, w)
        assert np.isnan(out[:, r : r + h, c : c + w]).all()  # every pixel written once
        out[:, r : r + h, c : c + w] = values
        covered_out[r : r + h, c : c + w] = covered
        windows.append((r, c, h, w))

    acc = BlendAccumulator(grid, channels, depth)
    tiles = [(k, row, col) for k, row in enumerate(grid.row_origins) for col in grid.col_origins]
    for k, row, col in (order(tiles) if order else tiles):
        ri = reflect_index(np.arange(row, row + grid.tile), grid.height)
        ci = reflect_index(np.arange(col, col + grid.tile), grid.width)
        tile_valid = valid[ri[:, None], ci[None, :]]
        if tile_valid.any():
            acc.add(k, col, image[:, ri[:, None], ci[None, :]], tile_valid)
        else:
            acc.skip(k)
        acc.flush(write)
    acc.flush(write)
    return out, covered_out, windows


@pytest.mark.parametrize("shape,tile,overlap,half_rf",
                         [((70, 90), 32, 12, 3), ((33, 5), 16, 6, 1), ((40, 40), 40, 0, 0)])
def test_blended_identity_tiles_give_the_image_back(shape, tile, overlap, half_rf):
    """Weights are normalised: tiles that repeat the raster blend back to it exactly (to float
    rounding), on every pixel, at every edge."""
    rng = np.random.default_rng(1)
    image = rng.random((2,) + shape, dtype=np.float32)
    grid = TileGrid.plan(*shape, tile, overlap, half_rf)
    out, covered, _ = run_accumulator(grid, image, np.ones(shape, bool))
    assert covered.all()
    np.testing.assert_allclose(out, image, rtol=1e-6, atol=1e-6)


def test_constant_tiles_blend_to_the_constant_and_weights_sum_over_the_overlap():
    grid = TileGrid.plan(50, 61, 16, 8, 2)
    acc = BlendAccumulator(grid, 1)
    for k, _ in enumerate(grid.row_origins):
        for col in grid.col_origins:
            acc.add(k, col, np.full((1, 16, 16), 0.25, np.float32), np.ones((16, 16), bool))
    row0 = grid.row_origins[0]
    weights = acc.weights[-row0 : -row0 + grid.height]  # strip row 0 is the first tile's origin
    expected = np.zeros((grid.height + 2 * grid.tile, grid.width + 2 * grid.tile))
    for r in grid.row_origins:  # the windows of all tiles, summed independently
        for c in grid.col_origins:
            expected[r + grid.tile : r + 2 * grid.tile, c + grid.tile : c + 2 * grid.tile] += grid.window()
    inside = expected[grid.tile : grid.tile + grid.height, grid.tile : grid.tile + grid.width]
    np.testing.assert_allclose(weights, inside, rtol=1e-6)
    values = []
    acc.flush(lambda v, covered, window: values.append((v, covered)))
    assert all(np.allclose(v, 0.25) and c.all() for v, c in values)


def test_strip_blend_equals_whole_raster_blend_and_invalid_pixels_stay_uncovered():
    rng = np.random.default_rng(2)
    shape = (120, 75)
    image = rng.random((3,) + shape, dtype=np.float32)
    valid = np.ones(shape, bool)
    valid[40:90, 10:60] = False  # wholly invalid tiles are skipped
    grid = TileGrid.plan(*shape, 24, 10, 3)
    whole, covered_whole, _ = run_accumulator(grid, image, valid)
    depth = grid.row_origins[2] - grid.row_origins[0] + grid.tile  # two tile rows in flight
    strip, covered_strip, windows = run_accumulator(grid, image, valid, depth=depth)
    assert np.array_equal(covered_whole, covered_strip)
    np.testing.assert_array_equal(np.nan_to_num(whole), np.nan_to_num(strip))
    assert not covered_strip[50:80, 20:50].any() and covered_strip[~np.isin(np.arange(shape[0]), range(40, 90))].all()
    rows_written = sorted({(r, h) for r, _, h, _ in windows})
    assert sum(h for _, h in rows_written) == shape[0]  # each raster row handed on once


def test_rows_are_handed_on_only_when_their_tiles_are_all_in():
    grid = TileGrid.plan(40, 40, 16, 4, 2)
    acc = BlendAccumulator(grid, 1)
    written = []
    ones = np.ones((1, 16, 16), np.float32)
    for col in grid.col_origins[:-1]:
        acc.add(0, col, ones, np.ones((16, 16), bool))
    acc.flush(lambda v, c, w: written.append(w))
    assert written == []
    acc.skip(0)
    acc.flush(lambda v, c, w: written.append(w))
    assert len(written) == 1 and int(written[0].row_off) == 0
    assert int(written[0].height) == grid.row_origins[1] - grid.row_origins[0] - grid.margin


def test_wide_rows_are_written_in_column_chunks(monkeypatch):
    from glacierseg.core import tiling

    monkeypatch.setattr(tiling, "WRITE_CHUNK_PX", 16)
    grid = TileGrid.plan(20, 40, 20, 0, 0)
    acc = BlendAccumulator(grid, 1)
    for col in grid.col_origins:
        acc.add(0, col, np.ones((1, 20, 20), np.float32), np.ones((20, 20), bool))
    windows = []
    acc.flush(lambda v, c, w: windows.append((int(w.col_off), int(w.width))))
    assert windows == [(0, 16), (16, 16), (32, 8)]


def test_reflect_index():
    assert reflect_index(np.arange(-3, 8), 5).tolist() == [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]
    assert reflect_index(np.arange(-2, 3), 1).tolist() == [0, 0, 0, 0, 0]


@pytest.mark.parametrize("mode,count", [("none", 1), ("flips", 4), ("d4", 8)])
def test_dihedral_transforms_invert(mode, count):
    x = np.arange(2 * 3 * 5 * 5, dtype=np.float32).reshape(2, 3, 5, 5)
    transforms = dihedral_transforms(mode)
    assert len(transforms) == count == len(set(transforms))
    images = {apply_transform(x, t, f).tobytes() for t, f in transforms}
    assert len(images) == count  # all distinct
    for turns, flip in transforms:
        assert np.array_equal(invert_transform(apply_transform(x, turns, flip), turns, flip), x)
    with pytest.raises(ValueError, match="augmentation"):
        dihedral_transforms("rotate")


def test_whole_raster_blend_equals_the_direct_weighted_sum():
    """``BlendAccumulator`` over the whole raster gives, bit for bit, the weighted sum over the
    full arrays divided by the summed weights, with tiles left out (outside a region) not
    counted and pixels no valid tile reaches uncovered."""
    rng = np.random.default_rng(3)
    h, w, channels = 77, 58, 2
    grid = TileGrid.plan(h, w, 32, 12, 4)
    valid = rng.random((h, w)) > 0.1
    region = np.zeros((h, w), bool)
    region[10:50, 5:40] = True
    window, tile = grid.window(), grid.tile
    acc, weight, tiles = np.zeros((channels, h, w), np.float32), np.zeros((h, w), np.float32), []
    for k, row in enumerate(grid.row_origins):
        for col in grid.col_origins:
            r0, r1, c0, c1 = max(row, 0), min(row + tile, h), max(col, 0), min(col + tile, w)
            if not ((window > 0)[r0 - row : r1 - row, c0 - col : c1 - col] & region[r0:r1, c0:c1]).any():
                continue  # the tile misses the region
            ri, ci = reflect_index(np.arange(row, row + tile), h), reflect_index(np.arange(col, col + tile), w)
            values = rng.random((channels, tile, tile), dtype=np.float32)
            tile_valid = valid[ri[:, None], ci[None, :]]
            tiles.append((k, col, values, tile_valid))
            wt = window * tile_valid
            sub = (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))
            acc[:, r0:r1, c0:c1] += values[:, sub[0], sub[1]] * wt[sub]
            weight[r0:r1, c0:c1] += wt[sub]
    assert 0 < len(tiles) < len(grid)
    accumulator = BlendAccumulator(grid, channels)
    for k, col, values, tile_valid in tiles:
        accumulator.add(k, col, values, tile_valid)
    out, covered = np.zeros((channels, h, w), np.float32), np.zeros((h, w), bool)

    def write(values, mask, win):
        rows = slice(int(win.row_off), int(win.row_off + win.height))
        cols = slice(int(win.col_off), int(win.col_off + win.width))
        out[:, rows, cols] = values
        covered[rows, cols] = mask

    accumulator.finish(write)
    assert np.array_equal(covered, weight > 0) and covered[region & valid].all() and not covered.all()
    assert np.array_equal(out, np.where(weight > 0, acc / np.where(weight > 0, weight, 1.0), 0.0))
