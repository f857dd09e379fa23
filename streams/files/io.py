"""Read and write pullback files in any format octguide knows, choosing the codec for the caller.

Reading looks at the content, not the name: a DICOM file ("DICM" at byte 128, or a bare data set
starting with a group 0002 or 0008 element) goes to :func:`streams.files.dicom.read_dicom`; an HDF5 file
(its signature at byte 0, 512, 1024, 2048, ...) goes to :func:`streams.files.native.read_native`.
Writing follows the suffix: ``.dcm`` is DICOM, ``.h5`` (including ``.oct.h5``) is native.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from streams.errors import PullbackFileError
from streams.files.dicom import read_dicom, write_dicom
from streams.pullback import Pullback

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
DICOM_SUFFIXES = (".dcm",)
NATIVE_SUFFIXES = (".h5",)
# First element groups of a DICOM data set written without preamble: File Meta or Identifying.
_BARE_DICOM_GROUPS = (0x0002, 0x0008)


def sniff_format(path: str | os.PathLike) -> str:
    """``"dicom"`` or ``"native"`` from a file's first bytes.

    Raises
    ------
    PullbackFileError
        The file does not exist, cannot be read, or is neither DICOM nor HDF5.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as stream:
            head = stream.read(132)
            if head[128:132] == b"DICM":
                return "dicom"
            # The HDF5 superblock may follow a user block of 512 * 2**k bytes.
            offset = 0
            while offset + len(HDF5_SIGNATURE) <= size:
                stream.seek(offset)
                if stream.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                    return "native"
                offset = 512 if offset == 0 else offset * 2
    except FileNotFoundError as exc:
        raise PullbackFileError(path, "no such file") from exc
    except OSError as exc:
        raise PullbackFileError(path, f"cannot be read: {exc.strerror or exc}") from exc
    if len(head) >= 8 and int.from_bytes(head[:2], "little") in _BARE_DICOM_GROUPS:
        return "dicom"
    raise PullbackFileError(
        path,
        "is neither DICOM (no DICM prefix, no data set) "
        "nor an octguide HDF5 pullback (no HDF5 signature)",
    )


#: Sample types the engine and the wire protocol carry (streams.wire.protocol.DTYPES).
SUPPORTED_SAMPLE_DTYPES = (np.dtype("u1"), np.dtype("u2"), np.dtype("f4"))


def read_pullback(path: str | os.PathLike) -> Pullback:
    """Read a pullback from a DICOM IVOCT or native HDF5 file, whichever its content is.

    Raises
    ------
    PullbackFileError
        Or one of its subclasses, naming the file and what is wrong.
    """
    if sniff_format(path) == "dicom":
        pullback = read_dicom(path)
    else:
        # Imported here so DICOM reading works without the native codec's dependencies.
        from streams.files.native import read_native

        pullback = read_native(path)
    dtype = np.dtype(pullback.frames.dtype)
    if dtype.newbyteorder("=") not in SUPPORTED_SAMPLE_DTYPES:
        raise PullbackFileError(path, f"frames are {dtype}; octguide analyses "
                                f"{', '.join(str(d) for d in SUPPORTED_SAMPLE_DTYPES)} samples only")
    return pullback


def write_pullback(pullback: Pullback, path: str | os.PathLike) -> None:
    """Write a pullback in the format its suffix names (``.dcm``; ``.h5`` or ``.oct.h5``).

    Raises
    ------
    PullbackFileError
        The suffix is not one octguide writes, or the codec fails.
    """
    suffix = Path(path).suffix.lower()
    if suffix in DICOM_SUFFIXES:
        write_dicom(pullback, path)
    elif suffix in NATIVE_SUFFIXES:
        from streams.files.native import write_native

        write_native(pullback, path)
    else:
        raise PullbackFileError(
            path,
            f"suffix {suffix!r} names no pullback format; "
            "use .dcm (DICOM IVOCT) or .h5/.oct.h5 (native)",
        )
