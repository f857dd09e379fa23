"""Fixtures for model tests: the shipped model, copied so tests can tamper with it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.analysis.segment import DEFAULT_MODEL
from engine.compute.backends import registry
from models.manifest import manifest_path_for

needs_onnxruntime = pytest.mark.skipif(
    not registry().available("onnxruntime"),
    reason=f"onnxruntime not usable: {registry().probe('onnxruntime').reason}",
)


@pytest.fixture
def shipped_copy(tmp_path: Path) -> Path:
    """A copy of the shipped model and its manifest in a temporary folder; returns the .onnx."""
    model = tmp_path / DEFAULT_MODEL.name
    shutil.copy(DEFAULT_MODEL, model)
    shutil.copy(manifest_path_for(DEFAULT_MODEL), manifest_path_for(model))
    return model
