"""Every bad ``--set`` or config file is rejected with one line on stderr and exit 2, never a
traceback (issue 13 item 13)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.commands.cli import main
from engine.commands.serve import build_config
from engine.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _rejected(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("octguide: config error: "), err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("server.nope=1", "unknown key 'nope' in [server]"),
        ("backend.runtime=tensorrt", "unknown section [backend]"),
        ("server.workers=two", "server.workers must be an integer, got 'two'"),
        ("server.workers=99", "server.workers=99 is outside 1..8 threads"),
        ("server.render_image=1", "server.render_image must be true or false, got 1"),
        ("guidance.calcium_arc_deg=nan", "guidance.calcium_arc_deg must be finite"),
        ("guidance.stent_lengths_mm=[12, 8]", "strictly increasing"),
        ("workers=2", "expected SECTION.KEY=VALUE"),
        ("server.frames_endpoint=tcp://127.0.0.1:99999", "port 99999 is outside 1..65535"),
        ("segment.runtime=tensorrt-9", "segment.runtime='tensorrt-9' is not one of"),
        ("segment.precision=fp16", "not available with runtime 'onnxruntime'"),
    ],
)
def test_a_bad_set_is_one_line_and_exit_2(capsys, override, match):
    assert match in _rejected(capsys, ["serve", "--set", override])


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not a TOML text file (byte"),
        (b"[server\n", "invalid TOML"),
        (b"[server]\nnope = 1\n", "unknown key 'nope' in [server]"),
        (b"workers = 2\n", "unknown section [workers]"),
        (b"guidance = 5\n", "[guidance] must be a table"),
        (b"[server]\ncontrol_endpoint = \"tcp://127.0.0.1:99999\"\n", "port 99999 is outside"),
        (b"[segment]\nthreads = 1e999\n", "segment.threads must be an integer"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_it_and_exit_2(capsys, tmp_path, content, match):
    path = tmp_path / "octguide.toml"
    path.write_bytes(content)
    err = _rejected(capsys, ["serve", "--config", str(path)])
    assert f"config error: {path}: " in err and match in err


def test_a_missing_or_unreadable_config_file_is_one_line(capsys, tmp_path):
    assert "cannot read configuration" in _rejected(capsys, ["serve", "--config", str(tmp_path / "no.toml")])
    assert "cannot read configuration" in _rejected(capsys, ["serve", "--config", str(tmp_path)])


def test_view_rejects_a_bad_set_the_same_way(capsys, tmp_path):
    _rejected(capsys, ["view", "--results", str(tmp_path), "--set", "server.image_size_px=1"])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_set_text_is_a_config_or_a_config_error(text):
    try:
        build_config(None, [text])
    except ConfigError as exc:
        assert "\n" not in str(exc)


def test_the_real_command_prints_no_traceback(tmp_path):
    binary = tmp_path / "binary.toml"
    binary.write_bytes(bytes(range(256)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args in (["--set", "server.frames_endpoint=tcp://127.0.0.1:99999"], ["--config", str(binary)]):
        done = subprocess.run([sys.executable, "-m", "engine.commands.cli", "serve", *args],
                              capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
                              check=False)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
