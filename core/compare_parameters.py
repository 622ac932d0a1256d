"""Tunable constants of the outline comparison (``core.compare``; docs/compare-outlines.md)."""

# An earlier and a later outline are the same object when their intersection covers at least
# this fraction of the smaller of the two: half, so that a glacier that shrank inside its old
# outline, or lakes that merged, link, while slivers along shifted ice divides or digitising
# differences between inventories do not.
DEFAULT_MIN_OVERLAP = 0.5

# Gained / lost pieces smaller than this (m²) are not written as features (numerical slivers
# of identical boundaries); they still count in the areas.
MIN_PIECE_M2 = 1.0

# Rates per year are given only where the two dates of an object are at least this many years
# apart: over shorter intervals (e.g. two inventories of the same summer) the change is
# digitising difference, and dividing it by weeks would report it as a fast rate.
MIN_RATE_YEARS = 1.0
