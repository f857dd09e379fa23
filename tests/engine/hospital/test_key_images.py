"""Key images: the MLA frame (post-PCI also MSA and worst malapposition) as Secondary Capture,
overlay and notice burned in, in the source's study, listed in the SR, valid (dciodvfy)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from engine.hospital.export import load_results, write_pullback_dicom
from engine.hospital.key_images import key_frames
from engine.synthetic.phantom import generate_pullback
from streams.files.dicom import write_dicom
from tests.engine.hospital.conftest import dciodvfy_errors, write_results

ALINES, SAMPLES = 64, 200


@pytest.fixture(params=[False, True], ids=["pre-pci", "post-pci"])
def case(request, tmp_path):
    scenario = "stented-malapposed" if request.param else "calcified"
    pullback = generate_pullback(scenario, seed=1, n_frames=6, n_alines=ALINES,
                                 n_samples=SAMPLES, frame_rate_hz=180.0)
    source = tmp_path / "source.dcm"
    write_dicom(pullback, source)
    results = write_results(tmp_path / "results", request.param, n_alines=ALINES)
    return results, source, request.param


def test_key_frames_are_mla_msa_and_worst_malapposition(case):
    results, _, stented = case
    pullback, records = load_results(results)
    picks = key_frames(pullback, records)
    if stented:
        # MLA and MSA are both frame 4 (kept once); frame 0's strut is 250 um from the lumen,
        # no other frame's is farther
        assert picks == [("MLA", 4), ("worst malapposition", 0)]
    else:
        assert picks == [("MLA", 4)]


def test_key_images_are_valid_sc_in_the_source_study_and_listed_in_the_sr(case):
    results, source_path, stented = case
    paths = write_pullback_dicom(results, source_path, None)
    assert [p.name for p in paths] == ["sr.dcm", "key_1.dcm"] + (["key_2.dcm"] if stented else [])
    source = pydicom.dcmread(source_path, stop_before_pixels=True)
    sr = pydicom.dcmread(paths[0])
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    library = [item for item in sr.ContentSequence
               if item.ConceptNameCodeSequence[0].CodeValue == "111028"]  # Image Library
    listed = {entry.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
              for group in library[0].ContentSequence for entry in group.ContentSequence
              if entry.ValueType == "IMAGE"}
    for path in paths:
        assert dciodvfy_errors(path) == [], path.name
    for path in paths[1:]:
        image = pydicom.dcmread(path)
        assert image.StudyInstanceUID == source.StudyInstanceUID
        assert image.SOPInstanceUID in listed
        assert image.BurnedInAnnotation == "YES"
        assert image.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        rgb = image.pixel_array
        assert rgb.shape == (512, 512, 3)
        # the overlay is drawn in colour (lumen green, notice orange): not a grey image
        assert np.count_nonzero(rgb[..., 0] != rgb[..., 1]) > 500
        # the notice sits in the bottom rows
        assert np.count_nonzero(rgb[-30:, :, 1] > 150) > 100


def test_without_pixels_only_the_sr_is_written(results_dir):
    paths = write_pullback_dicom(results_dir, None, None)
    assert [p.name for p in paths] == ["sr.dcm"]
