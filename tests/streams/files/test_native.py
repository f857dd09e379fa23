"""The native HDF5 container: bit-exact round trip with truth, and typed errors on bad files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from engine.synthetic.phantom import generate_pullback
from streams.errors import (
    InconsistentDimensionsError,
    MissingAttributeError,
    NotIVOCTError,
    TruncatedFileError,
)
from streams.files.native import read_native, write_native


@pytest.fixture(scope="module")
def phantom():
    return generate_pullback("stented-malapposed", seed=5, n_frames=4, n_alines=256, n_samples=512, frame_pitch_mm=6.0)


@pytest.fixture()
def written(phantom, tmp_path):
    path = tmp_path / "pb.oct.h5"
    write_native(phantom, path)
    return path


def test_round_trip_is_exact(phantom, written):
    back = read_native(written)
    np.testing.assert_array_equal(back.frames, phantom.frames)
    assert back.frames.dtype == phantom.frames.dtype
    assert back.geometry == phantom.geometry
    for name in ("z_offset_px", "seam_index", "frame_spacing_mm"):
        np.testing.assert_array_equal(getattr(back, name), getattr(phantom, name))
    assert back.frame_rate_hz == phantom.frame_rate_hz
    assert back.pullback_id == phantom.pullback_id
    assert back.attributes == phantom.attributes
    assert back.truth.guidance == phantom.truth.guidance
    assert back.truth.scenario == phantom.truth.scenario
    for a, b in zip(back.truth.frames, phantom.truth.frames):
        assert a.record == b.record
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.shadow, b.shadow)
        np.testing.assert_array_equal(a.lumen_radius_mm, b.lumen_radius_mm)
        np.testing.assert_array_equal(a.eel_radius_mm, b.eel_radius_mm)


def test_truncated_file_is_a_typed_error(written):
    data = written.read_bytes()
    written.write_bytes(data[: len(data) // 2])
    with pytest.raises(TruncatedFileError, match=str(written.name)):
        read_native(written)


def test_foreign_hdf5_is_rejected(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(NotIVOCTError, match="format"):
        read_native(path)


def test_missing_dataset_is_named(written):
    with h5py.File(written, "a") as f:
        del f["seam_index"]
    with pytest.raises(MissingAttributeError, match="seam_index"):
        read_native(written)


def test_inconsistent_dimensions_are_named(written):
    with h5py.File(written, "a") as f:
        f["geometry"].attrs["n_samples"] = 600
    with pytest.raises(InconsistentDimensionsError, match="frames"):
        read_native(written)
