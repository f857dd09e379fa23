"""Scan conversion: every backend against the float64 reference, and the reference against the
geometry definition (centre, orientation, radius, wrap-around, background)."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.compute.backends import BackendRegistry, Implementation
from engine.compute.scan_convert import (
    CartesianGrid,
    DisplayOrientation,
    ReferenceScanKernel,
    ScanConverter,
    build_table,
    image_to_polar,
    inverse_scan_convert,
    polar_to_image,
)
from streams.errors import GeometryError
from streams.geometry import FrameGeometry
from streams.pullback import Frame
from tests.conftest import backend_params

BACKENDS = backend_params("scan_convert")
REPO = Path(__file__).resolve().parents[3]

# (n_alines stored, n_padded, n_samples, spacing mm, refractive index, rotation, z, seam, N)
GEOMETRIES = [
    (256, 0, 512, 0.0100, 1.00, "CW", 9, 17, 256),
    (504, 4, 968, 0.0065, 1.34, "CC", -23, 311, 384),
    (1024, 0, 1200, 0.0048, 1.33, "CW", 41, 1023, 320),
    (497, 3, 701, 0.0070, 1.30, "CC", 1, 0, 257),
]


def _frame(geometry: FrameGeometry, pixels: np.ndarray, z: int = 0, seam: int = 0) -> Frame:
    return Frame("test", 0, 0.0, pixels, geometry, z_offset_px=z, seam_index=seam)


def _geometry(spec) -> tuple[FrameGeometry, int, int, CartesianGrid]:
    a, pad, n, spacing, index, rotation, z, seam, size = spec
    g = FrameGeometry(n_alines=a, n_samples=n, aline_spacing_mm=spacing, refractive_index=index,
                      n_padded_alines=pad, rotation=rotation)
    # Field of view a little larger than the ranging depth, so the background is exercised.
    fov = 2.1 * (n + max(z, 0)) * g.sample_spacing_mm
    return g, z, seam, CartesianGrid(size, fov)


def _converter(backend: str, grid: CartesianGrid, **kwargs) -> ScanConverter:
    stage = ScanConverter(grid, backend=backend, strict=True, **kwargs)
    stage.start()
    return stage


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spec", GEOMETRIES, ids=lambda s: f"A{s[0]}n{s[2]}{s[5]}z{s[6]}")
@pytest.mark.parametrize("seam_mode", ["stored", "annex_eee"])
def test_matches_reference_on_random_frames(backend, spec, seam_mode):
    geometry, z, seam, grid = _geometry(spec)
    orientation = DisplayOrientation(first_aline_deg=37.0, seam_mode=seam_mode, seam_line_deg=250.0)
    stage = _converter(backend, grid, orientation=orientation)
    reference = _converter("numpy", grid, orientation=orientation)
    rng = np.random.default_rng(spec[0] + spec[2])
    # Padded rows hold garbage that must never reach the image.
    pixels = rng.integers(0, 65536, (geometry.n_alines, geometry.n_samples), dtype=np.uint16)
    for dtype, full_scale in ((np.uint16, 65535.0), (np.float32, 1.0)):
        data = pixels if dtype == np.uint16 else (pixels / 65535.0).astype(np.float32)
        frame = _frame(geometry, data, z, seam)
        expected = reference.process(frame)
        got = stage.process(frame)
        assert got.shape == (grid.size_px, grid.size_px)
        assert got.dtype == (np.float64 if backend == "numpy" else np.float32)
        error = np.abs(got.astype(np.float64) - expected).max() / full_scale
        assert error <= 1e-3, f"{backend} {dtype.__name__}: max error {error:.2e} of full scale"
    stage.stop()


def _angle_deg_of_pixels(grid: CartesianGrid, image: np.ndarray) -> tuple[float, float]:
    """Intensity-weighted circular mean screen angle (deg clockwise from 12) and mean radius (mm)."""
    offsets = grid.offsets_mm()
    dx, dy = np.meshgrid(offsets, offsets)
    w = np.clip(image, 0, None)
    psi = np.arctan2(dx, -dy)
    mean = math.degrees(math.atan2((w * np.sin(psi)).sum(), (w * np.cos(psi)).sum())) % 360.0
    radius = float((w * np.hypot(dx, dy)).sum() / w.sum())
    return mean, radius


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rotation,first_deg", [("CW", 0.0), ("CC", 0.0), ("CW", 90.0), ("CC", 300.0)])
def test_single_aline_lands_at_its_angle(backend, rotation, first_deg):
    a = 360
    geometry = FrameGeometry(n_alines=a + 2, n_samples=600, aline_spacing_mm=0.01,
                             n_padded_alines=2, rotation=rotation)
    grid = CartesianGrid(301, 13.0)
    stage = _converter(backend, grid, orientation=DisplayOrientation(first_aline_deg=first_deg))
    direction = 1 if rotation == "CW" else -1
    for row in (0, 45, 133, a - 1):
        pixels = np.zeros((a + 2, 600), np.uint16)
        pixels[row, 100:] = 60000
        image = stage.process(_frame(geometry, pixels, z=12, seam=77))
        angle, _ = _angle_deg_of_pixels(grid, image)
        expected = (first_deg + direction * 360.0 * row / a) % 360.0
        off = (angle - expected + 180.0) % 360.0 - 180.0
        # Bilinear spreads one A-line over +-1 row symmetrically: the centroid is on it.
        assert abs(off) < 0.1 * 360.0 / a, f"row {row}: at {angle:.3f} deg, expected {expected:.3f}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("column,z", [(150, 0), (150, 37), (400, -60), (20, 5)])
def test_reflector_column_lands_at_its_radius(backend, column, z):
    geometry = FrameGeometry(n_alines=500, n_samples=700, aline_spacing_mm=0.0065,
                             refractive_index=1.34)
    grid = CartesianGrid(512, 9.0)
    stage = _converter(backend, grid)
    pixels = np.zeros((500, 700), np.uint16)
    pixels[:, column] = 50000
    image = stage.process(_frame(geometry, pixels, z=z, seam=3))
    _, radius = _angle_deg_of_pixels(grid, image)
    expected = (column + z) * geometry.sample_spacing_mm
    assert abs(radius - expected) <= grid.pixel_mm / 2, f"ring at {radius:.4f} mm, expected {expected:.4f}"
    # Every A-line is the same, so the image is symmetric about the catheter centre.
    assert np.allclose(image, image[::-1, ::-1], atol=1e-2)


def test_reference_centre_is_the_catheter_centre():
    geometry = FrameGeometry(n_alines=400, n_samples=300, aline_spacing_mm=0.01)
    grid = CartesianGrid(64, 0.64)
    # The same linear radial profile on every A-line: the image must be 10 - r / s exactly,
    # which holds only if the image centre is the catheter centre.
    pixels = np.tile(np.maximum(0.0, 10.0 - np.arange(300)), (400, 1))
    image = ReferenceScanKernel().convert(pixels, build_table(geometry, grid), 0, 0)
    offsets = grid.offsets_mm()
    r = np.hypot(*np.meshgrid(offsets, offsets))
    near = r < 0.09
    assert near.sum() > 100
    assert np.allclose(image[near], 10.0 - r[near] / 0.01, atol=1e-9)


def test_reference_wraps_between_last_and_first_aline():
    a = 100
    geometry = FrameGeometry(n_alines=a, n_samples=200, aline_spacing_mm=0.01)
    grid = CartesianGrid(201, 4.02)
    orientation = DisplayOrientation()
    pixels = np.zeros((a, 200))
    pixels[0] = 1.0  # the last row stays 0
    image = ReferenceScanKernel().convert(pixels, build_table(geometry, grid), 0, 0)
    # The pixel nearest to halfway between row a-1 and row 0, 1.5 mm out.
    x, y = (np.round(v) for v in polar_to_image(geometry, grid, orientation, a - 0.5, 150))
    row, _ = image_to_polar(geometry, grid, orientation, x, y)
    weight_of_row_0 = float(row) - (a - 1)
    assert 0.2 < weight_of_row_0 < 0.8
    assert image[int(y), int(x)] == pytest.approx(weight_of_row_0, abs=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_background_beyond_ranging_depth(backend):
    geometry = FrameGeometry(n_alines=300, n_samples=400, aline_spacing_mm=0.01)
    grid = CartesianGrid(200, 12.0)
    stage = _converter(backend, grid)
    z = 25
    image = stage.process(_frame(geometry, np.full((300, 400), 1000, np.uint16), z=z))
    offsets = grid.offsets_mm()
    r = np.hypot(*np.meshgrid(offsets, offsets))
    beyond = r >= (400 + z) * 0.01
    inside = (r >= (z + 1) * 0.01) & (r <= (400 + z - 1) * 0.01)
    near_centre = r <= (z - 1) * 0.01
    assert beyond.any() and near_centre.any()
    assert np.all(image[beyond] == 0)
    assert np.all(image[near_centre] == 0)
    assert np.allclose(image[inside], 1000, atol=0.05)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tables_cached_per_geometry_not_per_frame(backend):
    g1 = FrameGeometry(n_alines=256, n_samples=300, aline_spacing_mm=0.01)
    g2 = g1.with_(n_samples=320)
    grid = CartesianGrid(128, 6.0)
    stage = _converter(backend, grid, cache_size=2)
    builds = stage.table_builds
    pixels = np.ones((256, 300), np.uint16)
    for z, seam in ((0, 0), (10, 5), (-7, 200)):
        stage.process(_frame(g1, pixels, z, seam))
    assert stage.table_builds == builds + 1  # z offset and seam are per-frame terms
    stage.process(_frame(g2, np.ones((256, 320), np.uint16)))
    assert stage.table_builds == builds + 2
    stage.process(_frame(g1, pixels, 3, 1))
    assert stage.table_builds == builds + 2  # still cached
    stage.process(_frame(g1.with_(aline_spacing_mm=0.02), pixels))
    assert stage.status()["tables_cached"] == 2  # bounded


def test_annex_eee_mode_rotates_by_the_seam():
    geometry = FrameGeometry(n_alines=200, n_samples=100, aline_spacing_mm=0.01)
    grid = CartesianGrid(64, 2.2)
    stored = _converter("numpy", grid)
    annex = _converter("numpy", grid, orientation=DisplayOrientation(seam_mode="annex_eee",
                                                                        seam_line_deg=0.0))
    pixels = np.zeros((200, 100))
    pixels[50, 10:] = 1.0
    a_stored, _ = _angle_deg_of_pixels(grid, stored.process(_frame(geometry, pixels, seam=50)))
    a_annex, _ = _angle_deg_of_pixels(grid, annex.process(_frame(geometry, pixels, seam=50)))
    assert a_stored == pytest.approx(90.0, abs=0.2)  # row 50 of 200, clockwise from 12
    assert min(a_annex, 360 - a_annex) == pytest.approx(0.0, abs=0.2)  # the seam row at 12


def test_polar_image_coordinates_round_trip():
    geometry = FrameGeometry(n_alines=500, n_samples=900, aline_spacing_mm=0.0065,
                             refractive_index=1.34, rotation="CC")
    grid = CartesianGrid(400, 9.0)
    orientation = DisplayOrientation(first_aline_deg=123.0, seam_mode="annex_eee", seam_line_deg=10.0)
    rows = np.array([0.0, 12.25, 250.0, 499.5])
    cols = np.array([5.0, 100.0, 333.3, 800.0])
    x, y = polar_to_image(geometry, grid, orientation, rows, cols, z_offset_px=-4, seam_index=77)
    back_rows, back_cols = image_to_polar(geometry, grid, orientation, x, y, z_offset_px=-4, seam_index=77)
    assert np.allclose(back_rows, rows, atol=1e-9)
    assert np.allclose(back_cols, cols, atol=1e-9)


def test_inverse_scan_convert_recovers_a_smooth_frame():
    geometry = FrameGeometry(n_alines=360, n_samples=200, aline_spacing_mm=0.01)
    grid = CartesianGrid(512, 4.4)
    theta = geometry.aline_angles_rad()[:, None]
    columns = np.arange(200)[None, :]
    pixels = 100 + 50 * np.cos(theta) * np.sin(columns / 30.0)
    image = ReferenceScanKernel().convert(pixels, build_table(geometry, grid), 3, 0)
    back = inverse_scan_convert(image, geometry, grid, z_offset_px=3)
    interior = slice(40, 190)  # away from the centre (undersampled) and the outer fade
    assert np.abs(back[:, interior] - pixels[:, interior]).max() < 0.5


@pytest.mark.parametrize("backend", BACKENDS)
def test_shape_errors_name_the_shape(backend):
    geometry = FrameGeometry(n_alines=64, n_samples=100, aline_spacing_mm=0.01)
    stage = _converter(backend, CartesianGrid(32, 2.0))
    table = stage.table(geometry)
    with pytest.raises(ValueError, match=r"\(64, 99\)"):
        stage.kernel.convert(np.zeros((64, 99), np.uint16), table, 0, 0)
    bad = Frame("t", 0, 0.0, np.zeros((63, 100), np.uint16), geometry)
    with pytest.raises(ValueError, match=r"\(63, 100\)"):
        stage.process(bad)


def test_numba_process_writes_into_out():
    geometry = FrameGeometry(n_alines=64, n_samples=100, aline_spacing_mm=0.01)
    stage = _converter("numba", CartesianGrid(32, 2.0))
    out = np.full((32, 32), -1.0, np.float32)
    result = stage.process(_frame(geometry, np.full((64, 100), 7, np.uint16)), out=out)
    assert result is out and out[16, 16] == pytest.approx(7.0)
    with pytest.raises(ValueError, match=r"\(31, 32\)"):
        stage.process(_frame(geometry, np.zeros((64, 100), np.uint16)),
                      out=np.zeros((31, 32), np.float32))


def test_grid_and_orientation_validate():
    with pytest.raises(GeometryError, match="size_px"):
        CartesianGrid(8, 10.0)
    with pytest.raises(GeometryError, match="fov_mm"):
        CartesianGrid(512, 0.0)
    with pytest.raises(GeometryError, match="seam_mode"):
        DisplayOrientation(seam_mode="rotate")
    grid = CartesianGrid.from_pixel_size(10.0, 0.01)
    assert grid.size_px == 1000 and grid.pixel_mm == pytest.approx(0.01)


def test_preferred_gpu_falls_back_with_a_logged_reason(caplog):
    def broken():
        raise ImportError("No module named 'cupy'")

    registry = BackendRegistry(probes={"numpy": lambda: (np, np.__version__, {}), "cupy": broken})
    impls = {"scan_convert": [
        Implementation("scan_convert", "cupy", "gpu", ("cupy",), "engine.compute.scan_convert:CupyScanKernel"),
        Implementation("scan_convert", "numpy", "cpu", ("numpy",),
                       "engine.compute.scan_convert:ReferenceScanKernel"),
    ]}
    registry = BackendRegistry(probes=registry._probe_functions, implementations=impls)
    stage = ScanConverter(CartesianGrid(32, 2.0), backend="cupy", backends=registry)
    with caplog.at_level(logging.WARNING, logger="engine.compute.backends"):
        stage.start()
    assert stage.status()["backend"] == "numpy"
    assert "falling back to 'numpy'" in caplog.text and "No module named 'cupy'" in caplog.text
    report = registry.report()
    assert report["selected"]["scan_convert"]["fallback_reason"].startswith("cupy: ImportError")
    strict = ScanConverter(CartesianGrid(32, 2.0), backend="cupy", strict=True, backends=registry)
    with pytest.raises(Exception, match="not usable"):
        strict.start()


@pytest.mark.slow
def test_numba_cuda_kernel_on_the_simulator():
    """The Numba CUDA kernel's indexing, checked without a GPU on Numba's CUDA simulator."""
    script = (
        "import numpy as np\n"
        "from engine.compute.scan_convert import *\n"
        "from streams.geometry import FrameGeometry\n"
        "g = FrameGeometry(n_alines=66, n_samples=80, aline_spacing_mm=0.01, n_padded_alines=2,"
        " rotation='CC')\n"
        "t = build_table(g, CartesianGrid(24, 1.9), DisplayOrientation(first_aline_deg=45.0))\n"
        "p = np.random.default_rng(0).integers(0, 65535, (64, 80)).astype(np.uint16)\n"
        "k = NumbaCudaScanKernel()\n"
        "got = k.to_host(k.convert(p, t, 5, 63))\n"
        "ref = ReferenceScanKernel().convert(p, t, 5, 63)\n"
        "print(float(np.abs(got - ref).max() / 65535))\n"
    )
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout.strip().splitlines()[-1]) <= 1e-3


def test_bench_command_parses_and_finds_its_suite():
    import argparse

    from engine.commands import bench
    from engine.commands.cli import build_parser

    args = build_parser().parse_args(["bench", "scan", "--json", "--repeats", "7"])
    assert args.suite == "scan" and args.json and args.repeats == 7 and args.handler is bench.run
    suite = bench.load_suite("scan")
    own = argparse.ArgumentParser()
    suite.add_arguments(own)
    assert own.parse_args(["--json", "--repeats", "7"]).__dict__.items() <= args.__dict__.items()
