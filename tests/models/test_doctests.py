"""The worked examples in the model modules' docstrings run and hold."""

from __future__ import annotations

import doctest

import pytest

import engine.analysis.segment
import models.manifest
import models.runtime
import models.training.targets


@pytest.mark.parametrize(
    "module",
    [models.training.targets, models.manifest, models.runtime, engine.analysis.segment],
    ids=lambda m: m.__name__,
)
def test_doctests_pass(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
