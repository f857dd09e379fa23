"""Into the hospital: DICOM SR reports, key images, DICOM networking (send, listen) and the
audit trail (docs/dicom_sr.md)."""
