"""strided_percentiles (histogram + sort of the wanted bins) equals percentiles of the strided
float32 sample exactly, whatever the ties and the dtype."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import engine.display.kernels
from engine.clinical.levels import percentiles
from engine.display.kernels import strided_percentiles

Q = (0.0, 60.0, 99.9, 100.0, 37.5)


def _images():
    rng = np.random.default_rng(7)
    speckle = rng.gamma(2.0, 6000.0, (512, 512)).astype(np.float32)
    disc = speckle.copy()
    yy, xx = np.mgrid[:512, :512]
    disc[(yy - 255.5) ** 2 + (xx - 255.5) ** 2 > 240**2] = 0.0  # the background: many ties at 0
    levels = rng.integers(0, 5, (301, 203)).astype(np.float64)  # few distinct values, float64
    spike = np.zeros((64, 64), np.float32)
    spike[5, 5] = 1e30  # one outlier squeezes everything else into the first bin
    return {"speckle": speckle, "disc": disc, "levels": levels, "flat": np.full((40, 40), 3.25),
            "spike": spike, "view": speckle[3:, 1:]}


@pytest.mark.parametrize("name", list(_images()))
@pytest.mark.parametrize("step", [1, 4, 5])
def test_equals_percentiles_of_the_float32_sample(name, step):
    image = _images()[name]
    expected = percentiles(np.asarray(image[::step, ::step], dtype=np.float32), Q)
    np.testing.assert_array_equal(strided_percentiles(image, step, Q), expected)


def test_nan_falls_back_to_the_sorting_path():
    image = _images()["speckle"].copy()
    image[8, 8] = np.nan
    expected = percentiles(np.asarray(image[::4, ::4], dtype=np.float32), Q)
    np.testing.assert_array_equal(strided_percentiles(image, 4, Q), expected)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="2-D"):
        strided_percentiles(np.zeros(5), 1, (50.0,))
    with pytest.raises(ValueError, match="step"):
        strided_percentiles(np.zeros((5, 5)), 0, (50.0,))


def test_doctests():
    result = doctest.testmod(engine.display.kernels)
    assert result.attempted > 0 and result.failed == 0
