"""The DICOM Structured Report of one analysed pullback: a TID 1500 Measurement Report in an
Enhanced SR instance, built with highdicom (docs/dicom_sr.md has the tree and the codes).

:func:`build_report` turns a results folder's ``pullback.json`` and ``frames.jsonl``
(docs/results.md) into the SR dataset; :func:`report_numbers` reads any such SR back with
highdicom into ``{(group, concept, derivation): value}``; :func:`expected_numbers` gives the same
keys from the JSON, so a reader and a test can check that the report says what the results say.
Numbers that are ``null`` in the results are left out of the report, never written as zero.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import highdicom as hd
import pydicom
from highdicom.sr import (
    AlgorithmIdentification,
    DeviceObserverIdentifyingAttributes,
    FindingSite,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    QualitativeEvaluation,
    SourceImageForMeasurementGroup,
    TextContentItem,
    TrackingIdentifier,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import UID

from engine import __version__
from engine.hospital import codes as c
from engine.hospital.source import SourceInstance
from streams.errors import OctguideError

NOT_A_MEDICAL_DEVICE = ("octguide is engineering software trained on synthetic data: it is not a "
                        "medical device and is not validated for clinical use.")
SR_SERIES_NUMBER = 900


class ReportError(OctguideError):
    """The results cannot be turned into a report (missing or malformed fields)."""


@dataclass(frozen=True)
class Item:
    """One numeric measurement of a group: where it sits in the results and how it is coded."""

    key: tuple[str, ...]
    concept: Code
    unit: Code
    derivation: Code | None = None


# Pullback-level groups: (tracking identifier, finding type, the section of pullback.json, items).
_PULLBACK_GROUPS: tuple[tuple[str, Code, tuple[str, ...], tuple[Item, ...]], ...] = (
    ("MLA", c.SITE_LUMEN_MINIMUM, ("mla",), (
        Item(("area_mm2",), c.LUMEN_AREA, c.MM2, c.MINIMUM),
        Item(("frame",), c.FRAME_NUMBER, c.FRAME_UNIT),
    )),
    ("proximal reference", c.PROXIMAL_REFERENCE, ("references",), (
        Item(("proximal_lumen_area_mm2",), c.LUMEN_AREA, c.MM2),
        Item(("proximal_eel_mean_diameter_mm",), c.EEM_DIAMETER, c.MM, c.MEAN),
        Item(("proximal_frame",), c.FRAME_NUMBER, c.FRAME_UNIT),
    )),
    ("distal reference", c.DISTAL_REFERENCE, ("references",), (
        Item(("distal_lumen_area_mm2",), c.LUMEN_AREA, c.MM2),
        Item(("distal_eel_mean_diameter_mm",), c.EEM_DIAMETER, c.MM, c.MEAN),
        Item(("distal_frame",), c.FRAME_NUMBER, c.FRAME_UNIT),
    )),
    ("calcium", c.VASCULAR_CALCIFICATION, ("calcium",), (
        Item(("score",), c.CALCIUM_SCORE, c.POINTS_UNIT),
        Item(("arc_points",), c.CALCIUM_ARC_POINTS, c.POINTS_UNIT),
        Item(("thickness_points",), c.CALCIUM_THICKNESS_POINTS, c.POINTS_UNIT),
        Item(("length_points",), c.CALCIUM_LENGTH_POINTS, c.POINTS_UNIT),
        Item(("max_arc_deg",), c.CALCIUM_ARC, c.DEG, c.MAXIMUM),
        Item(("max_thickness_mm",), c.CALCIUM_THICKNESS, c.MM, c.MAXIMUM),
        Item(("length_mm",), c.CALCIUM_LENGTH, c.MM),
    )),
    ("stent sizing", c.LESION, ("sizing",), (
        Item(("diameter_mm",), c.STENT_DIAMETER, c.MM),
        Item(("length_mm",), c.STENT_LENGTH, c.MM),
        Item(("required_length_mm",), c.REQUIRED_LENGTH, c.MM),
        Item(("proximal_landing_frame",), c.PROXIMAL_LANDING_FRAME, c.FRAME_UNIT),
        Item(("distal_landing_frame",), c.DISTAL_LANDING_FRAME, c.FRAME_UNIT),
    )),
    ("stent expansion", c.STENTED_REGION, ("stent",), (
        Item(("msa_mm2",), c.STENT_AREA, c.MM2, c.MINIMUM),
        Item(("msa_frame",), c.FRAME_NUMBER, c.FRAME_UNIT),
        Item(("expansion_pct",), c.STENT_EXPANSION, c.PERCENT),
        Item(("proximal_expansion_pct",), c.PROXIMAL_EXPANSION, c.PERCENT),
        Item(("distal_expansion_pct",), c.DISTAL_EXPANSION, c.PERCENT),
    )),
    ("malapposition", c.INCOMPLETE_APPOSITION, ("stent",), (
        Item(("struts_total",), c.STRUT_COUNT, c.STRUTS_UNIT),
        Item(("struts_malapposed",), c.MALAPPOSED_STRUT_COUNT, c.STRUTS_UNIT),
        Item(("max_malapposition_um",), c.MALAPPOSITION_DISTANCE, c.UM, c.MAXIMUM),
        Item(("malapposed_length_mm",), c.MALAPPOSITION_LENGTH, c.MM),
        Item(("struts_relevant",), c.RELEVANT_MALAPPOSED_STRUTS, c.STRUTS_UNIT),
        Item(("relevant_length_mm",), c.RELEVANT_MALAPPOSITION_LENGTH, c.MM),
    )),
)
# The frame each pullback-level group is measured on (its source image reference).
_GROUP_FRAME = {"MLA": ("mla", "frame"), "proximal reference": ("references", "proximal_frame"),
                "distal reference": ("references", "distal_frame"),
                "stent expansion": ("stent", "msa_frame")}

_FRAME_ITEMS: tuple[Item, ...] = (
    Item(("lumen", "area_mm2"), c.LUMEN_AREA, c.MM2),
    Item(("lumen", "min_diameter_mm"), c.LUMEN_DIAMETER, c.MM, c.MINIMUM),
    Item(("lumen", "max_diameter_mm"), c.LUMEN_DIAMETER, c.MM, c.MAXIMUM),
    Item(("lumen", "mean_diameter_mm"), c.LUMEN_DIAMETER, c.MM, c.MEAN),
    Item(("eel", "visible_arc_deg"), c.EEL_VISIBLE_ARC, c.DEG),
    Item(("eel", "mean_diameter_mm"), c.EEM_DIAMETER, c.MM, c.MEAN),
    Item(("calcium", "arc_deg"), c.CALCIUM_ARC, c.DEG),
    Item(("calcium", "max_thickness_mm"), c.CALCIUM_THICKNESS, c.MM, c.MAXIMUM),
    Item(("lipid", "arc_deg"), c.LIPID_ARC, c.DEG),
    Item(("lipid", "min_cap_thickness_mm"), c.FIBROUS_CAP_THICKNESS, c.MM, c.MINIMUM),
    Item(("fibrous_arc_deg",), c.FIBROUS_ARC, c.DEG),
    Item(("plaque_free_arc_deg",), c.PLAQUE_FREE_ARC, c.DEG),
    Item(("strut_count",), c.STRUT_COUNT, c.STRUTS_UNIT),
    Item(("malapposed_strut_count",), c.MALAPPOSED_STRUT_COUNT, c.STRUTS_UNIT),
    Item(("stent", "area_mm2"), c.STENT_AREA, c.MM2),
    Item(("confidence",), c.ANALYSIS_CONFIDENCE, c.RATIO_UNIT),
)


def _lookup(data: Any, key: Sequence[str]) -> Any:
    for part in key:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _number(value: Any) -> float | None:
    """A finite number, or None (``null``, absent, booleans and non-numbers are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def frame_values(record: dict) -> dict:
    """The frame record with the derived per-frame numbers the report carries: the fibrous
    plaque arc (sum of its runs, deg) and the strut counts."""
    struts = record.get("struts") or []
    plaque = record.get("plaque")
    fibrous = None if plaque is None else sum(p.get("arc_deg") or 0.0 for p in plaque
                                              if p.get("type") == "fibrous")
    return {**record, "fibrous_arc_deg": fibrous,
            "strut_count": None if record.get("struts") is None else len(struts),
            "malapposed_strut_count": None if record.get("struts") is None
            else sum(s.get("malapposed") is True for s in struts)}


def _key(group: str, item: Item) -> tuple[str, str, str | None]:
    return (group, item.concept.value, item.derivation.value if item.derivation else None)


def frame_group_id(index: int) -> str:
    return f"frame {index}"


def expected_numbers(pullback: dict, records: Iterable[dict]) -> dict[tuple[str, str, str | None], float]:
    """``{(group tracking id, concept code value, derivation code value or None): value}`` of
    every number the report of these results carries (what :func:`report_numbers` must read)."""
    out: dict[tuple[str, str, str | None], float] = {}
    for group, _, section, items in _PULLBACK_GROUPS:
        for item in items:
            value = _number(_lookup(pullback, section + item.key))
            if value is not None:
                out[_key(group, item)] = value
    for record in records:
        if record.get("status") != "ok":
            continue
        values = frame_values(record)
        for item in _FRAME_ITEMS:
            value = _number(_lookup(values, item.key))
            if value is not None:
                out[_key(frame_group_id(int(record["frame"])), item)] = value
    return out


def algorithm_identification(pullback: dict) -> AlgorithmIdentification:
    """TID 4019: the model that made the numbers, with its sha256, the engine version and the
    hash of the configuration as algorithm parameters."""
    model = pullback.get("model") or {}
    parameters = [f"model_sha256={model.get('sha256') or 'unknown'}",
                  f"engine_version={pullback.get('engine_version') or __version__}",
                  f"config_hash={pullback.get('config_hash') or 'unknown'}"]
    return AlgorithmIdentification(name=str(model.get("name") or "octguide"),
                                   version=str(model.get("version") or __version__),
                                   parameters=parameters, manufacturer="octguide")


def _measurements(data: dict, items: Iterable[Item]) -> list[Measurement]:
    out = []
    for item in items:
        value = _number(_lookup(data, item.key))
        if value is not None:
            out.append(Measurement(name=item.concept, value=value, unit=item.unit,
                                   derivation=item.derivation))
    return out


KeyImagesByFrame = Mapping[int, Dataset]


def _source_images(source: SourceInstance, frame: Any,
                   key_images: KeyImagesByFrame) -> list[SourceImageForMeasurementGroup] | None:
    """What a group measured on ``frame`` references: the frame of the IVOCT instance; for a
    wire pullback (no instance) the key image of that frame, if it has one, else nothing."""
    if not isinstance(frame, int) or isinstance(frame, bool) or not 0 <= frame < source.n_frames:
        return None
    if not source.synthetic:
        return [SourceImageForMeasurementGroup(source.sop_class_uid, source.sop_instance_uid,
                                               referenced_frame_numbers=[frame + 1])]
    image = key_images.get(frame)
    if image is None:
        return None
    return [SourceImageForMeasurementGroup(image.SOPClassUID, image.SOPInstanceUID)]


def _group(tracking_id: str, finding_type: Code, algorithm: AlgorithmIdentification,
           measurements: list[Measurement], source: SourceInstance, frame: Any,
           evaluations: list[QualitativeEvaluation] | None = None,
           texts: Iterable[tuple[Code, str]] = (),
           key_images: KeyImagesByFrame | None = None) -> MeasurementsAndQualitativeEvaluations:
    sources = _source_images(source, frame, key_images or {})
    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=source.derived_uid(tracking_id),
                                               identifier=tracking_id),
        finding_type=finding_type,
        finding_sites=[FindingSite(c.CORONARY_ARTERY)],
        algorithm_id=algorithm,
        measurements=measurements or None,
        qualitative_evaluations=evaluations or None,
        source_images=sources,
    )
    container = group[0]
    for concept, text in texts:
        container.ContentSequence.append(TextContentItem(name=concept, value=_short_text(text),
                                                         relationship_type="CONTAINS"))
    return group


def _short_text(text: str) -> str:
    """TEXT content items are UT, but a reader's screen is small: one line, at most 1024 chars."""
    return " ".join(str(text).split())[:1024] or "-"


def pullback_groups(pullback: dict, source: SourceInstance, algorithm: AlgorithmIdentification,
                    key_images: KeyImagesByFrame | None = None,
                    ) -> list[MeasurementsAndQualitativeEvaluations]:
    """The pullback-level measurement groups (MLA, references, calcium, sizing or post-PCI
    expansion and malapposition) and the summary group with the warnings as text."""
    groups = []
    for tracking_id, finding, section, items in _PULLBACK_GROUPS:
        data = _lookup(pullback, section)
        if not isinstance(data, dict):
            continue
        measurements = _measurements(data, items)
        evaluations = []
        if tracking_id == "stent sizing" and data.get("basis") in c.SIZING_BASIS_CODES:
            evaluations.append(QualitativeEvaluation(c.SIZING_BASIS, c.SIZING_BASIS_CODES[data["basis"]]))
        if tracking_id == "stent expansion":
            cls = c.EXPANSION_CLASS_CODES.get(data.get("classification"), c.UNKNOWN)
            evaluations.append(QualitativeEvaluation(c.EXPANSION_CLASS, cls))
            if isinstance(data.get("msa_below_threshold"), bool):
                evaluations.append(QualitativeEvaluation(
                    c.MSA_BELOW_THRESHOLD, c.YES if data["msa_below_threshold"] else c.NO))
        texts = [(c.WARNING, w) for w in data.get("warnings") or ()] if tracking_id in (
            "stent sizing", "stent expansion") else []
        if not measurements and not evaluations:
            continue
        groups.append(_group(tracking_id, finding, algorithm, measurements, source,
                             _lookup(pullback, _GROUP_FRAME.get(tracking_id, ("-",))),
                             evaluations, texts, key_images))
    summary_texts = [(c.WARNING, w) for w in pullback.get("warnings") or ()]
    summary_texts.append((c.COMMENT, f"pullback {pullback.get('pullback_id')}: status "
                          f"{pullback.get('status')}" + (f" ({pullback['reason']})"
                                                         if pullback.get("reason") else "")))
    if source.synthetic:
        summary_texts.append((c.COMMENT, wire_reference_note(pullback)))
    summary_texts.append((c.NOT_A_MEDICAL_DEVICE, NOT_A_MEDICAL_DEVICE))
    groups.append(_group("pullback", c.ENTIRE_PULLBACK, algorithm, [], source, None,
                         texts=summary_texts))
    return groups


def wire_reference_note(pullback: dict) -> str:
    """The summary's comment for a pullback with no DICOM source: how its frames are named."""
    return (f"frames of pullback {pullback.get('pullback_id')} arrived over the octguide wire "
            "protocol: no DICOM instance holds them. Each frame group names its frame by its "
            "tracking identifier 'frame N' (N = 0-based acquisition index); groups measured on a "
            "key frame reference that frame's key image (Secondary Capture, series 'octguide key "
            "images'), the only instances this report can point at.")


def frame_group(record: dict, source: SourceInstance, algorithm: AlgorithmIdentification,
                key_images: KeyImagesByFrame | None = None) -> MeasurementsAndQualitativeEvaluations:
    """One frame's group; a frame that is not ``ok`` says why and carries no numbers."""
    index = int(record["frame"])
    status = record.get("status")
    evaluations = [QualitativeEvaluation(c.FRAME_STATUS, c.FRAME_STATUS_CODES.get(status, c.FRAME_FAILED))]
    if status != "ok":
        reason = record.get("reason") or str(status)
        return _group(frame_group_id(index), c.MEASUREMENT_GROUP_FRAME, algorithm, [], source,
                      index, evaluations, [(c.COMMENT, reason)], key_images)
    lipid = record.get("lipid") or {}
    if isinstance(lipid.get("tcfa"), bool):
        evaluations.append(QualitativeEvaluation(c.TCFA, c.YES if lipid["tcfa"] else c.NO))
    return _group(frame_group_id(index), c.MEASUREMENT_GROUP_FRAME, algorithm,
                  _measurements(frame_values(record), _FRAME_ITEMS), source, index, evaluations,
                  key_images=key_images)


def build_report(pullback: dict, records: Sequence[dict], source: SourceInstance, *,
                 key_images: Sequence[Dataset] = (), now: dt.datetime | None = None,
                 key_image_frames: Sequence[int] = ()) -> hd.sr.EnhancedSR:
    """The Enhanced SR (TID 1500) of one analysed pullback.

    Parameters
    ----------
    pullback, records : dict, list of dict
        ``pullback.json`` and the ``frames.jsonl`` records (docs/results.md).
    source : SourceInstance
        The IVOCT instance the frames came from (patient, study, SOP Instance UID); every
        frame group references its frame in it (Referenced Frame Number = frame index + 1).
    key_images : list of Dataset
        Key image instances (:mod:`engine.hospital.key_images`), listed in the Image Library.
    key_image_frames : list of int
        The 0-based frame each key image shows (same order). For a wire pullback (a synthetic
        ``source``: no DICOM instance exists) the groups measured on those frames reference the
        key images, no group references the stand-in instance, and the summary says so.
    """
    if not isinstance(pullback, dict) or "pullback_id" not in pullback:
        raise ReportError("pullback.json has no pullback_id: not an octguide results file")
    algorithm = algorithm_identification(pullback)
    device = ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=source.derived_uid("device"), name=f"octguide {__version__}",
            manufacturer_name="octguide", model_name="octguide"))
    by_frame = dict(zip(key_image_frames, key_images, strict=False))
    groups = pullback_groups(pullback, source, algorithm, by_frame)
    frame_groups = [frame_group(r, source, algorithm, by_frame) for r in records]
    # a wire pullback's stand-in instance exists nowhere: only its key images are evidence
    evidence = [*key_images] if source.synthetic else [source.header, *key_images]
    report = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=device),
        procedure_reported=c.IVOCT_PROCEDURE,
        imaging_measurements=groups,
        referenced_images=evidence or None,
    )
    moment = now or dt.datetime.now()
    # The SR is built around the pullback-level groups, the per-frame groups (built and validated
    # by highdicom above) are appended after: EnhancedSR deep-copies, re-parses and searches its
    # whole content tree, 70 % of the report's time at 200 frames, and the frame groups change
    # none of what it derives (they reference only instances of the Image Library, the evidence).
    sr = hd.sr.EnhancedSR(
        evidence=[source.header, *key_images],  # the header gives patient and study
        content=report[0],
        series_instance_uid=source.derived_uid("sr-series"),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=report_uid(source, pullback),
        instance_number=1,
        manufacturer="octguide",
        is_complete=pullback.get("status") == "complete",
        series_description="octguide measurement report",
        content_date=moment.date(), content_time=moment.time(),
        software_versions=f"octguide {__version__}",
    )
    measurements = next(item for item in sr.ContentSequence
                        if item.ConceptNameCodeSequence[0].CodeValue == "126010")
    for group in frame_groups:
        measurements.ContentSequence.extend(group)
    if source.synthetic:
        _drop_evidence(sr, str(source.sop_instance_uid))
    sr.CodingSchemeIdentificationSequence = [private_coding_scheme()]
    return sr


def _drop_evidence(sr: Dataset, sop_instance_uid: str) -> None:
    """Take an instance that exists nowhere (a wire pullback's stand-in) out of the evidence
    sequences highdicom filled from its ``evidence`` (every same-study instance goes there); a
    sequence left empty is removed (type 1C: present only when instances are referenced)."""
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        studies = sr.get(keyword)
        if studies is None:
            continue
        for study in studies:
            for series in study.ReferencedSeriesSequence:
                series.ReferencedSOPSequence = [
                    i for i in series.ReferencedSOPSequence
                    if str(i.ReferencedSOPInstanceUID) != sop_instance_uid]
            study.ReferencedSeriesSequence = [
                s for s in study.ReferencedSeriesSequence if len(s.ReferencedSOPSequence)]
        kept = [study for study in studies if len(study.ReferencedSeriesSequence)]
        if kept:
            setattr(sr, keyword, kept)
        else:
            delattr(sr, keyword)


def private_coding_scheme() -> Dataset:
    """Coding Scheme Identification (PS3.3 C.12.1.1.5) of the private scheme ``99OCTG``."""
    item = Dataset()
    item.CodingSchemeDesignator = c.PRIVATE_SCHEME
    item.CodingSchemeName = c.PRIVATE_SCHEME_NAME
    item.CodingSchemeVersion = c.PRIVATE_SCHEME_VERSION
    item.CodingSchemeResponsibleOrganization = "octguide (docs/dicom_sr.md)"
    return item


def report_uid(source: SourceInstance, pullback: dict) -> UID:
    """The SR's SOP Instance UID: derived from the source instance and the pullback id, so a
    report written twice for the same results is the same instance (never stored twice)."""
    return source.derived_uid(f"sr:{pullback.get('pullback_id')}")


def _tracking_id(group: Any) -> str:
    for item in group[0].ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeValue == "112039":  # Tracking Identifier
            return str(item.TextValue)
    raise ReportError("a measurement group has no tracking identifier")


def report_numbers(dataset: Dataset) -> dict[tuple[str, str, str | None], float]:
    """Every number of an octguide SR, read back with highdicom, keyed as
    :func:`expected_numbers` keys them."""
    if "ContentSequence" not in dataset:
        raise ReportError("the dataset has no SR content")
    report = MeasurementReport.from_sequence([dataset_as_root(dataset)])
    out: dict[tuple[str, str, str | None], float] = {}
    for group in report.get_image_measurement_groups():
        name = _tracking_id(group)
        for measurement in group.get_measurements():
            derivation = measurement.derivation.value if measurement.derivation else None
            out[(name, measurement.name.value, derivation)] = float(measurement.value)
    return out


_TEXT_CONCEPTS = {c.WARNING.value, c.COMMENT.value, c.NOT_A_MEDICAL_DEVICE.value}


def report_texts(dataset: Dataset) -> dict[str, list[tuple[str, str]]]:
    """``{group tracking id: [(concept code value, text)]}`` of the report's TEXT items
    (warnings, frame reasons, the notice)."""
    report = MeasurementReport.from_sequence([dataset_as_root(dataset)])
    out: dict[str, list[tuple[str, str]]] = {}
    for group in report.get_image_measurement_groups():
        texts = [(i.ConceptNameCodeSequence[0].CodeValue, str(i.TextValue))
                 for i in group[0].ContentSequence if i.ValueType == "TEXT"
                 and i.ConceptNameCodeSequence[0].CodeValue in _TEXT_CONCEPTS]
        out[_tracking_id(group)] = texts
    return out


def dataset_as_root(dataset: Dataset) -> Dataset:
    """The SR document's root content item as highdicom's readers take it."""
    root = Dataset()
    for keyword in ("ValueType", "ConceptNameCodeSequence", "ContinuityOfContent",
                    "ContentTemplateSequence", "ContentSequence"):
        if keyword in dataset:
            setattr(root, keyword, getattr(dataset, keyword))
    return root


def frame_references(dataset: Dataset) -> Iterator[tuple[str, str, int]]:
    """``(tracking id, referenced SOP Instance UID, referenced frame number)`` of each group that
    references a source frame."""
    report = MeasurementReport.from_sequence([dataset_as_root(dataset)])
    for group in report.get_image_measurement_groups():
        for image in group.source_images:
            ref = image.ReferencedSOPSequence[0]
            frames = ref.get("ReferencedFrameNumber")
            if frames is not None:
                number = frames[0] if isinstance(frames, pydicom.multival.MultiValue) else frames
                yield _tracking_id(group), str(ref.ReferencedSOPInstanceUID), int(number)
