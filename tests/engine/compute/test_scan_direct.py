"""The direct CPU gather (NumbaScanKernel) against the "quad" re-layout it replaced
(tests/engine/compute/quad_reference.py), on the scan-conversion test geometries.

Both use the same packed table and the same float32 blend, so they agree to float32 rounding:
the stated tolerance is 4 float32 ulps of full scale (fastmath may contract the blend
differently in the two kernels), far below the 1e-3 of full scale both meet against the
float64 reference (tests/engine/compute/test_scan_convert.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.compute.backends import registry
from engine.compute.scan_convert import NumbaScanKernel, build_table
from tests.engine.compute.test_scan_convert import GEOMETRIES, _geometry

pytestmark = pytest.mark.skipif(not registry().available("numba"), reason="numba not usable")

FULL_SCALE = {np.uint8: 255.0, np.uint16: 65535.0, np.float32: 1.0, np.float64: 1.0}


def _frame(rng, shape, dtype):
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, int(FULL_SCALE[dtype]) + 1, shape).astype(dtype)
    return rng.random(shape).astype(dtype)


@pytest.mark.parametrize("spec", GEOMETRIES, ids=lambda s: f"A{s[0]}")
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64], ids=lambda d: d.__name__)
def test_direct_gather_equals_the_quad_path(spec, dtype):
    from tests.engine.compute.quad_reference import QuadScan

    geometry, z, seam, grid = _geometry(spec)
    table = build_table(geometry, grid)
    rng = np.random.default_rng(spec[0])
    polar = _frame(rng, (geometry.n_valid_alines, geometry.n_samples), dtype)
    direct, quad = NumbaScanKernel(), QuadScan()
    out = np.full((grid.size_px, grid.size_px), np.nan, np.float32)
    for z_px, shift in ((z, seam), (0, 0), (-geometry.n_samples // 3, geometry.n_valid_alines - 1),
                        (geometry.n_samples + 5, 1)):
        new = direct.convert(polar, table, z_px, shift, out=out)
        old = quad.convert(polar, table, z_px, shift)
        assert new is out
        tolerance = 4 * np.spacing(np.float32(FULL_SCALE[dtype]))
        np.testing.assert_allclose(new, old, rtol=0, atol=tolerance)
        assert np.count_nonzero(old) > 0 or z_px > geometry.n_samples


def test_direct_gather_reads_zero_outside_the_stored_columns():
    geometry, _, _, grid = _geometry(GEOMETRIES[0])
    table = build_table(geometry, grid)
    polar = np.full((geometry.n_valid_alines, geometry.n_samples), 1000, np.uint16)
    # stored column = radius - z: with z = -(n + 1) every pixel reads past the last column
    assert not NumbaScanKernel().convert(polar, table, -(geometry.n_samples + 1), 0).any()
    # with z = n every pixel inside the ranging depth reads before the first column, and the
    # ones beyond it read stored samples
    image = NumbaScanKernel().convert(polar, table, geometry.n_samples, 0)
    centre = grid.size_px // 2
    assert image[centre, centre] == 0 and image.max() == 1000
