"""Science constants of GlacierSeg, one documented home: each with its source (paper and the
place in it, or "chosen here" with how it was set).

Sections are appended per module; this branch holds the vectorize section only (the other
sections come with their modules' branches).
"""
from __future__ import annotations

# ------------------------------------------------------------------ vectorize (core/vectorize.py)
# Smallest outline kept and largest background hole filled: 0.01 km², the minimum glacier size of
# the Randolph Glacier Inventory and GLIMS (RGI Consortium 2017, RGI 6.0 Technical Report,
# section on the minimum glacier size); smaller regions are mostly noise or snow patches, smaller
# holes mostly misclassified pixels (larger ones are nunataks). The same number as the band-ratio
# mapper's glacier minimum; kept apart because outlines are of any class (lakes, landslides too).
OUTLINE_MIN_AREA_KM2 = 0.01
OUTLINE_FILL_HOLE_KM2 = 0.01
# Chaikin (1974), "An algorithm for high-speed curve generation", Computer Graphics and Image
# Processing 3(4), 346–349: cutting 1/4 of each segment at each corner converges to the uniform
# quadratic B-spline of the polygon (his construction; QGIS native:smoothgeometry's default offset).
SMOOTH_OFFSET = 0.25
# Chosen here (the default since vectorize's first version, docs/vectorize.md): 3 passes round a
# pixel staircase into a smooth line; each further pass doubles the vertices and changes little.
SMOOTH_ITERATIONS = 3
