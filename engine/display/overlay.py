"""What a display draws of one analysed frame: the vector overlay, the grey image, L-mode cuts
and the overlay burned into an image (docs/protocol.md, "Overlay")."""

from __future__ import annotations

import functools

import cv2
import numpy as np

from engine.compute.scan_convert import CartesianGrid, DisplayOrientation, polar_to_image
from engine.display.kernels import strided_percentiles
from streams.geometry import FrameGeometry
from streams.pullback import Frame
from streams.wire.protocol import LMODE_ANGLES_DEG

#: BGR colours of the rendered overlay (the vector overlay carries states, not colours)
COLOURS = {"lumen": (80, 220, 80), "eel": (220, 180, 60), "guidewire": (255, 0, 255),
           "apposed": (80, 220, 80), "malapposed": (40, 40, 255), "unknown": (255, 255, 255),
           "calcium": (255, 255, 255), "lipid": (0, 200, 255), "fibrous": (170, 170, 170),
           "text": (255, 255, 255)}


def screen_deg(geometry: FrameGeometry, grid: CartesianGrid, orientation: DisplayOrientation,
               row: float, seam_index: int) -> float:
    """Screen angle (degrees clockwise from 12 o'clock) of a stored A-line row, from the scan
    converter's own mapping (:func:`engine.compute.scan_convert.polar_to_image`)."""
    x, y = polar_to_image(geometry, grid, orientation, row, 1.0, 0.0, seam_index)
    centre = (grid.size_px - 1) / 2.0
    return float(np.degrees(np.arctan2(x - centre, centre - y)) % 360.0)


def uncertainty_ring(record: dict, frame: Frame, grid: CartesianGrid,
                     orientation: DisplayOrientation, max_points: int = 64) -> dict | None:
    """The record's per-A-line ``uncertainty`` (0..1, docs/results.md) as the page draws it:
    ``{"angles_deg": [...], "values": [...]}``, screen degrees clockwise from 12 o'clock of the
    scan converter's own mapping, at most ``max_points`` (the largest value of each group of
    rows, so an uncertain A-line is never averaged away); None without any value. Vectorised:
    it runs for every live overlay."""
    values = record.get("uncertainty")
    g = frame.geometry
    if not isinstance(values, list) or not values:
        return None
    n = min(len(values), g.n_valid_alines)
    v = np.array([x if isinstance(x, (int, float)) and not isinstance(x, bool) else np.nan
                  for x in values[:n]], dtype=np.float64)
    if n == 0 or not np.isfinite(v).any():
        return None
    k = min(n, max_points)
    starts = (np.arange(k) * n) // k  # the groups np.array_split makes
    ends = np.append(starts[1:], n)
    with np.errstate(invalid="ignore"):
        peak = np.fmax.reduceat(v, starts)
    keep = np.isfinite(peak)
    rows = (starts + ends - 1) / 2.0
    x, y = polar_to_image(g, grid, orientation, rows[keep], 1.0, 0.0, frame.seam_index)
    centre = (grid.size_px - 1) / 2.0
    angles = np.degrees(np.arctan2(x - centre, centre - y)) % 360.0
    return {"angles_deg": np.round(angles, 2).tolist(), "values": np.round(peak[keep], 2).tolist()}


def _arc(geometry: FrameGeometry, grid: CartesianGrid, orientation: DisplayOrientation,
         alines: list, seam: int) -> dict:
    """Screen arc of an inclusive stored-row range, clockwise from ``start_deg``."""
    first, last = alines
    a = screen_deg(geometry, grid, orientation, first - 0.5, seam)
    b = screen_deg(geometry, grid, orientation, last + 0.5, seam)
    if geometry.rotation == "CC":
        a, b = b, a
    return {"alines": [int(first), int(last)], "start_deg": round(a, 2), "end_deg": round(b, 2),
            "arc_deg": round((b - a) % 360.0, 2)}


def overlay_metrics(record: dict) -> dict:
    """The overlay's ``metrics`` (docs/protocol.md 3.1) from a frame record: the numbers a
    display shows, ``None`` where unknown.

    >>> overlay_metrics({"lumen": {"area_mm2": 6.4}, "struts": [{"malapposed": True}, {"malapposed": False}]})
    ... # doctest: +ELLIPSIS
    {'lumen_area_mm2': 6.4, ..., 'struts': 2, 'struts_malapposed': 1}
    """
    lumen, stent = record.get("lumen") or {}, record.get("stent") or {}
    calcium, lipid = record.get("calcium") or {}, record.get("lipid") or {}
    struts = record.get("struts") or ()
    return {
        "lumen_area_mm2": lumen.get("area_mm2"),
        "lumen_min_diameter_mm": lumen.get("min_diameter_mm"),
        "lumen_max_diameter_mm": lumen.get("max_diameter_mm"),
        "lumen_mean_diameter_mm": lumen.get("mean_diameter_mm"),
        "calcium_arc_deg": calcium.get("arc_deg"),
        "lipid_arc_deg": lipid.get("arc_deg"),
        "tcfa": lipid.get("tcfa"),
        "stent_area_mm2": stent.get("area_mm2"),
        "struts": len(struts),
        "struts_malapposed": sum(s.get("malapposed") is True for s in struts),
    }


def build_overlay(record: dict, frame: Frame, grid: CartesianGrid,
                  orientation: DisplayOrientation, latency_ms: dict, max_points: int = 360) -> dict:
    """The vector overlay of one frame (docs/protocol.md, "Overlay") from its record.

    Coordinates are display image pixels of ``grid`` (x right, y down, pixel centres at integer
    coordinates, catheter centre at ``((N-1)/2, (N-1)/2)``); angles are screen degrees clockwise
    from 12 o'clock.
    """
    g = frame.geometry
    s = g.sample_spacing_mm

    def polyline(radii: list | None) -> list | None:
        if not radii:
            return None
        r = np.array([np.nan if v is None else v for v in radii[: g.n_valid_alines]], dtype=np.float64)
        rows = np.flatnonzero(np.isfinite(r))
        if rows.size < 3:
            return None
        if rows.size > max_points:
            rows = rows[np.linspace(0, rows.size - 1, max_points).astype(int)]
        x, y = polar_to_image(g, grid, orientation, rows.astype(np.float64), r[rows] / s, 0.0,
                              frame.seam_index)
        return np.round(np.stack([x, y], axis=1), 2).tolist()

    lumen, eel = record.get("lumen"), record.get("eel")
    struts = []
    for strut in record.get("struts") or ():
        x, y = polar_to_image(g, grid, orientation, float(strut["aline"]), strut["radius_mm"] / s,
                              0.0, frame.seam_index)
        state = {True: "malapposed", False: "apposed"}.get(strut.get("malapposed"), "unknown")
        struts.append({"x_px": round(float(x), 2), "y_px": round(float(y), 2), "state": state,
                       "distance_um": strut.get("distance_to_lumen_um")})
    plaque = record.get("plaque")
    guidewire = record.get("guidewire")
    return {
        "pullback_id": frame.pullback_id,
        "frame": frame.index,
        "timestamp_s": frame.timestamp_s,
        "status": record.get("status"),
        "reason": record.get("reason"),
        "confidence": record.get("confidence"),
        "grid": {"size_px": grid.size_px, "fov_mm": grid.fov_mm, "pixel_mm": grid.pixel_mm},
        "lumen": None if not lumen else {"points_px": polyline(lumen.get("radius_mm"))},
        "eel": None if not eel else {"points_px": polyline(eel.get("radius_mm")),
                                     "visible_arc_deg": eel.get("visible_arc_deg")},
        "plaque": None if plaque is None else [
            {"type": p["type"], **_arc(g, grid, orientation, p["alines"], frame.seam_index)}
            for p in plaque],
        "guidewire": None if not guidewire else _arc(g, grid, orientation, guidewire["alines"],
                                                     frame.seam_index),
        "struts": struts,
        "metrics": overlay_metrics(record),
        "uncertainty": uncertainty_ring(record, frame, grid, orientation),
        "latency_ms": {k: round(v, 3) for k, v in latency_ms.items()},
    }


def display_grey(image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The display image (``(N, N)`` real values) windowed to 8-bit grey.

    The window maps the 60th percentile of the image disc (noise floor) to black and the 99.9th
    to white, estimated on every 4th pixel (read in place, order statistics by histogram:
    :func:`engine.display.kernels.strided_percentiles`); one saturating scale-and-round pass
    writes the uint8 image (into ``out``, an ``(N, N)`` uint8 array, when given: no per-frame
    allocation for a float32 image).
    """
    lo, hi = strided_percentiles(image, 4, (60.0, 99.9)) if image.size else (0.0, 1.0)
    scale = 255.0 / max(float(hi - lo), 1e-9)
    source = image if image.dtype == np.float32 else np.asarray(image, dtype=np.float32)
    if out is None:
        return cv2.convertScaleAbs(source, alpha=scale, beta=-lo * scale)
    return cv2.convertScaleAbs(source, dst=out, alpha=scale, beta=-lo * scale)


@functools.lru_cache(maxsize=8)
def _lmode_index(size_px: int, angles_deg: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-pixel rows and columns of the diameters at ``angles_deg`` (screen degrees
    clockwise from 12 o'clock), each from the ``angle`` side through the centre to the other."""
    centre = (size_px - 1) / 2.0
    t = centre - np.arange(size_px, dtype=np.float64)  # signed distance from the centre, px
    theta = np.radians(np.asarray(angles_deg, dtype=np.float64))[:, None]
    cols = np.clip(np.rint(centre + t * np.sin(theta)), 0, size_px - 1).astype(np.intp)
    rows = np.clip(np.rint(centre - t * np.cos(theta)), 0, size_px - 1).astype(np.intp)
    return rows, cols


def lmode_cuts(grey: np.ndarray, angles_deg: tuple[float, ...] = LMODE_ANGLES_DEG) -> np.ndarray:
    """The L-mode cuts of one frame: ``(len(angles_deg), N)`` uint8, the grey display image
    along each diameter (one column of the longitudinal view per frame and angle).

    >>> grey = np.zeros((5, 5), np.uint8); grey[0, 2] = 200; grey[2, 4] = 100
    >>> lmode_cuts(grey, (0.0, 90.0)).tolist()
    [[200, 0, 0, 0, 0], [100, 0, 0, 0, 0]]
    """
    rows, cols = _lmode_index(grey.shape[0], tuple(float(a) for a in angles_deg))
    return np.ascontiguousarray(grey[rows, cols])


def render_overlay(image: np.ndarray, overlay: dict) -> np.ndarray:
    """The display image (``(N, N)`` real values) windowed to 8 bits (:func:`display_grey`),
    BGR, overlay burned in."""
    return burn_overlay(display_grey(image), overlay)


def burn_overlay(grey: np.ndarray, overlay: dict, out: np.ndarray | None = None) -> np.ndarray:
    """The grey display image as BGR with the vector overlay drawn into it (into ``out``, an
    ``(N, N, 3)`` uint8 array, when given)."""
    bgr = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR) if out is None else cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR, dst=out)
    n = bgr.shape[0]
    centre = ((n - 1) / 2.0, (n - 1) / 2.0)
    shift = 4  # fixed-point bits for sub-pixel drawing
    for key in ("lumen", "eel"):
        points = (overlay.get(key) or {}).get("points_px")
        if points:
            pts = np.round(np.asarray(points) * (1 << shift)).astype(np.int32)
            cv2.polylines(bgr, [pts], True, COLOURS[key], 1, cv2.LINE_AA, shift)
    arcs = [(p["type"], p, 0.46) for p in overlay.get("plaque") or ()]
    if overlay.get("guidewire"):
        arcs.append(("guidewire", overlay["guidewire"], 0.48))
    for kind, arc, radius_frac in arcs:
        axes = (int(n * radius_frac), int(n * radius_frac))
        start = arc["start_deg"] - 90.0  # OpenCV angles: clockwise from 3 o'clock (y down)
        cv2.ellipse(bgr, (int(centre[0]), int(centre[1])), axes, 0.0, start,
                    start + arc["arc_deg"], COLOURS[kind], 3, cv2.LINE_AA)
    for strut in overlay.get("struts") or ():
        cv2.circle(bgr, (round(strut["x_px"]), round(strut["y_px"])), 4,
                   COLOURS[strut["state"]], 1, cv2.LINE_AA)
    area = overlay["metrics"].get("lumen_area_mm2")
    text = f"#{overlay['frame']} {overlay['status']}" + (f"  {area:.2f} mm2" if area else "")
    cv2.putText(bgr, text, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, COLOURS["text"], 1, cv2.LINE_AA)
    return bgr
