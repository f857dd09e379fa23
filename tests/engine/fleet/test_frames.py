"""A pullback file read in bounded batches: the frames equal the whole-file reader's, in order,
and a bad file fails with the whole-file reader's typed reason."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine.fleet.frames import FrameBatches
from engine.synthetic.phantom import generate_pullback
from streams.errors import PullbackFileError
from streams.files import dicom as dicom_files
from streams.files.io import read_pullback, write_pullback

N_FRAMES = 10


@pytest.fixture(scope="module", params=["oct.h5", "dcm"])
def pullback_file(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("frames") / f"calcified.{request.param}"
    write_pullback(generate_pullback("calcified", seed=1, n_frames=N_FRAMES, n_alines=128, n_samples=256), path)
    return path


def test_batches_are_bounded_and_equal_the_whole_file_reader(pullback_file):
    whole = read_pullback(pullback_file)
    with FrameBatches(pullback_file, batch_frames=4, pullback_id="pb.1") as reader:
        assert len(reader) == N_FRAMES
        batches = list(reader.batches())
    assert [len(b) for b in batches] == [4, 4, 2]
    frames = [f for b in batches for f in b]
    for i, frame in enumerate(frames):
        expected = whole.frame(i)
        assert frame.pullback_id == "pb.1" and frame.index == i
        np.testing.assert_array_equal(frame.pixels, expected.pixels)
        assert not frame.pixels.flags.writeable
        ours = {k: v for k, v in dataclasses.asdict(frame).items() if k not in ("pixels", "pullback_id")}
        theirs = {k: v for k, v in dataclasses.asdict(expected).items() if k not in ("pixels", "pullback_id")}
        assert ours == theirs


def test_the_samples_are_not_read_whole(pullback_file):
    with FrameBatches(pullback_file, batch_frames=4) as reader:
        if pullback_file.suffix == ".dcm":
            assert isinstance(reader.meta.frames.base, np.memmap)  # mapped, paged in per batch
        else:
            assert reader.meta.frames.strides == (0, 0, 0)  # the streams reader saw no samples
    assert dicom_files._read_pixels.__name__ == "_read_pixels"  # the hook is undone


@pytest.mark.parametrize("content", [b"\x00" * 64 + b"not a pullback", "truncated"])
def test_a_bad_file_fails_with_the_whole_file_readers_reason(pullback_file, tmp_path, content):
    bad = tmp_path / pullback_file.name
    bad.write_bytes(pullback_file.read_bytes()[: pullback_file.stat().st_size // 2]
                    if content == "truncated" else content)
    with pytest.raises(PullbackFileError) as whole:
        read_pullback(bad)
    with pytest.raises(PullbackFileError) as batched:
        FrameBatches(bad)
    assert str(batched.value) == str(whole.value)
