"""The coded concepts of octguide's DICOM reports (docs/dicom_sr.md lists them all).

DICOM's own codes (DCM, PS3.16, mostly the intravascular context groups CID 3481-3497) and
SNOMED CT (SCT) where they exist; the private scheme ``99OCTG`` (coding scheme designators
beginning "99" are reserved for private use, PS3.16 section 8.2) only where no standard code
names the concept. UCUM units throughout.
"""

from __future__ import annotations

from pydicom.sr.coding import Code

PRIVATE_SCHEME = "99OCTG"
PRIVATE_SCHEME_NAME = "octguide private codes"
PRIVATE_SCHEME_VERSION = "1"


def _private(value: str, meaning: str) -> Code:
    return Code(value, PRIVATE_SCHEME, meaning)


# --- standard concepts -----------------------------------------------------------------------
LUMEN_AREA = Code("397415007", "SCT", "Vessel lumen cross-sectional area")  # CID 3482
LUMEN_DIAMETER = Code("397413000", "SCT", "Vessel lumen diameter")  # CID 3481
EEM_DIAMETER = Code("122330", "DCM", "EEM Diameter")  # CID 3481
STENT_AREA = Code("408705002", "SCT", "Stent Cross-Sectional Area")  # CID 3482
STENT_DIAMETER = Code("408706001", "SCT", "Stent Diameter")  # CID 3481
STENT_LENGTH = Code("408703009", "SCT", "Stent Length")  # CID 3483
STENT_EXPANSION = Code("122347", "DCM", "Stent Expansion Index")  # CID 3484
CALCIUM_ARC = Code("122355", "DCM", "Arc of Calcium")
CALCIUM_LENGTH = Code("122341", "DCM", "Calcium Length")  # CID 3483
MINIMUM = Code("255605001", "SCT", "Minimum")  # CID 3488 (derivation)
MAXIMUM = Code("56851009", "SCT", "Maximum")
MEAN = Code("373098007", "SCT", "Mean")
SITE_LUMEN_MINIMUM = Code("122382", "DCM", "Site of Lumen Minimum")  # CID 3486
PROXIMAL_REFERENCE = Code("122380", "DCM", "Proximal Reference")
DISTAL_REFERENCE = Code("122381", "DCM", "Distal Reference")
STENTED_REGION = Code("122383", "DCM", "Stented Region")  # CID 3487
ENTIRE_PULLBACK = Code("122384", "DCM", "Entire Pullback")
LESION = Code("52988006", "SCT", "Lesion")
VASCULAR_CALCIFICATION = Code("237897009", "SCT", "Vascular Calcification")  # CID 3491
INCOMPLETE_APPOSITION = Code("408709008", "SCT", "Incomplete Stent apposition")  # CID 3494
CORONARY_ARTERY = Code("41801008", "SCT", "Coronary artery")
IVOCT_PROCEDURE = Code("IVOCT", "DCM", "Intravascular Optical Coherence Tomography")
IVOCT_DEVICE = Code("445282004", "SCT", "Intravascular Optical Coherence Tomography Device")
KEY_IMAGE = Code("121180", "DCM", "Key Images")
COMMENT = Code("121106", "DCM", "Comment")

# --- private concepts (no standard code) --------------------------------------------------
FRAME_NUMBER = _private("F001", "Pullback frame index")
PULLBACK_POSITION = _private("F002", "Distance from the first (most distal) frame")
FRAME_STATUS = _private("F003", "Frame analysis status")
FRAME_MEASURED = _private("F004", "Frame measured")
FRAME_LOW_CONFIDENCE = _private("F005", "Frame not measured: low confidence")
FRAME_REJECTED = _private("F006", "Frame not measured: rejected")
FRAME_SKIPPED = _private("F007", "Frame not measured: skipped")
FRAME_FAILED = _private("F008", "Frame not measured: analysis failed")
ANALYSIS_CONFIDENCE = _private("F009", "Analysis confidence")
EEL_VISIBLE_ARC = _private("P001", "Visible external elastic lamina arc")
CALCIUM_THICKNESS = _private("P002", "Calcium thickness")
LIPID_ARC = _private("P003", "Arc of lipid")
FIBROUS_ARC = _private("P004", "Arc of fibrous plaque")
PLAQUE_FREE_ARC = _private("P005", "Plaque-free arc")
FIBROUS_CAP_THICKNESS = _private("P006", "Fibrous cap thickness")
TCFA = _private("P007", "Thin-cap fibroatheroma")
STRUT_COUNT = _private("S001", "Number of stent struts")
MALAPPOSED_STRUT_COUNT = _private("S002", "Number of malapposed stent struts")
MALAPPOSITION_DISTANCE = _private("S003", "Strut to lumen distance")
MALAPPOSITION_LENGTH = _private("S004", "Malapposed segment length")
RELEVANT_MALAPPOSED_STRUTS = _private("S005", "Number of clinically relevant malapposed struts")
RELEVANT_MALAPPOSITION_LENGTH = _private("S006", "Clinically relevant malapposed segment length")
PROXIMAL_EXPANSION = _private("S007", "Stent expansion, proximal half")
DISTAL_EXPANSION = _private("S008", "Stent expansion, distal half")
EXPANSION_CLASS = _private("S009", "Stent expansion classification")
MSA_BELOW_THRESHOLD = _private("S010", "Minimum stent area below threshold")
CALCIUM_SCORE = _private("C001", "OCT calcium score (Fujino 2018)")
CALCIUM_ARC_POINTS = _private("C002", "Calcium score arc points")
CALCIUM_THICKNESS_POINTS = _private("C003", "Calcium score thickness points")
CALCIUM_LENGTH_POINTS = _private("C004", "Calcium score length points")
SIZING_BASIS = _private("Z001", "Stent sizing basis")
SIZING_EEL = _private("Z002", "External elastic lamina diameter")
SIZING_LUMEN = _private("Z003", "Distal reference lumen diameter")
SIZING_UNDETERMINED = _private("Z004", "Undetermined")
REQUIRED_LENGTH = _private("Z005", "Required stent length between landing zones")
PROXIMAL_LANDING_FRAME = _private("Z006", "Proximal landing zone frame index")
DISTAL_LANDING_FRAME = _private("Z007", "Distal landing zone frame index")
WARNING = _private("W001", "Guidance warning")
NOT_A_MEDICAL_DEVICE = _private("W002", "Regulatory notice")
YES = Code("373066001", "SCT", "Yes")
NO = Code("373067005", "SCT", "No")
MEASUREMENT_GROUP_PULLBACK = _private("G001", "Pullback measurements")
MEASUREMENT_GROUP_FRAME = _private("G002", "Frame measurements")
OPTIMAL = _private("E001", "Optimal")
ACCEPTABLE = _private("E002", "Acceptable")
SUBOPTIMAL = _private("E003", "Suboptimal")
UNKNOWN = _private("E004", "Unknown")

# --- UCUM units ---------------------------------------------------------------------------
MM2 = Code("mm2", "UCUM", "square millimeter")
MM = Code("mm", "UCUM", "millimeter")
UM = Code("um", "UCUM", "micrometer")
DEG = Code("deg", "UCUM", "degree")
PERCENT = Code("%", "UCUM", "percent")
FRAME_UNIT = Code("{frame}", "UCUM", "frame")
STRUTS_UNIT = Code("{struts}", "UCUM", "struts")
POINTS_UNIT = Code("{points}", "UCUM", "points")
RATIO_UNIT = Code("1", "UCUM", "no units")

FRAME_STATUS_CODES = {
    "ok": FRAME_MEASURED,
    "low_confidence": FRAME_LOW_CONFIDENCE,
    "rejected": FRAME_REJECTED,
    "skipped": FRAME_SKIPPED,
    "failed": FRAME_FAILED,
}
EXPANSION_CLASS_CODES = {"optimal": OPTIMAL, "acceptable": ACCEPTABLE, "suboptimal": SUBOPTIMAL}
SIZING_BASIS_CODES = {"eel": SIZING_EEL, "lumen": SIZING_LUMEN, "undetermined": SIZING_UNDETERMINED}
