"""Frame sources and sinks: pullback geometry, the phantom, DICOM IVOCT and native files."""
