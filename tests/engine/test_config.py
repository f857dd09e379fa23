"""Configuration: defaults from DOMAIN.md, strict keys, range checks, TOML loading, audit hash."""

from __future__ import annotations

import ast
import doctest
import hashlib
import json
from pathlib import Path

import pytest

from engine import config as config_module
from engine.config import (
    AnalysisSettings,
    Config,
    ConfigError,
    DicomConfig,
    DisplayConfig,
    GuidanceConfig,
    MetalConfig,
    ScanConfig,
    SegmentConfig,
    ServerConfig,
    describe,
    load_config,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "guidance_rules.md"


def test_doctests_pass():
    result = doctest.testmod(config_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_imports_nothing_from_the_project():
    tree = ast.parse(Path(config_module.__file__).read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert not {m for m in modules if m and m.split(".")[0] in {"engine", "streams", "models"}}


def test_defaults_are_the_published_thresholds():
    g = GuidanceConfig()
    assert (g.reference_window_pre_mm, g.reference_window_post_mm) == (10.0, 5.0)
    assert (g.eel_visible_arc_deg, g.diameter_step_mm) == (180.0, 0.25)
    assert g.stent_lengths_mm == (8.0, 12.0, 15.0, 18.0, 23.0, 28.0, 33.0, 38.0)
    assert g.landing_plaque_free_arc_deg == 220.0
    assert (g.calcium_arc_deg, g.calcium_thickness_mm, g.calcium_length_mm) == (180.0, 0.5, 5.0)
    assert (g.tcfa_cap_thickness_um, g.tcfa_lipid_arc_deg) == (65.0, 90.0)
    assert (g.malapposition_threshold_um, g.malapposition_relevant_um) == (110.0, 200.0)
    assert g.malapposition_relevant_length_mm == 1.0
    assert (g.expansion_optimal_pct, g.expansion_acceptable_pct, g.msa_min_mm2) == (95.0, 90.0, 4.5)
    assert (g.dissection_flap_um, g.dissection_major_arc_deg, g.dissection_major_length_mm) == (
        200.0,
        60.0,
        3.0,
    )
    assert g.dissection_edge_window_mm == 5.0


def test_every_field_has_unit_range_source_and_doc():
    for row in describe(GuidanceConfig):
        assert row["unit"] and row["source"] and row["doc"], row["name"]
        values = row["value"] if isinstance(row["value"], list) else [row["value"]]
        assert all(row["low"] <= v <= row["high"] for v in values), row["name"]


def test_every_field_is_documented_in_the_rules_document():
    text = DOCS.read_text()
    missing = [row["name"] for row in describe(GuidanceConfig) if f"`{row['name']}`" not in text]
    assert not missing


def test_unknown_keys_are_named_with_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        GuidanceConfig.from_dict({"malaposition_threshold_um": 120})
    message = str(err.value)
    assert "'malaposition_threshold_um'" in message and "[guidance]" in message
    assert "malapposition_threshold_um" in message.split("valid keys:")[1]
    with pytest.raises(ConfigError, match=r"unknown section \[backend\]; valid sections: guidance"):
        Config.from_dict({"backend": {}})


@pytest.mark.parametrize("row", describe(GuidanceConfig), ids=lambda r: r["name"])
def test_out_of_range_values_name_the_field(row):
    name = row["name"]
    for bad in (row["low"] - 1.0, row["high"] + 1.0):
        value = [bad] if isinstance(row["value"], list) else bad
        with pytest.raises(ConfigError, match=rf"guidance\.{name}(\[0\])?={bad:g} is outside"):
            GuidanceConfig.from_dict({name: value})


@pytest.mark.parametrize("bad", [True, "180", None, float("nan"), float("inf"), [180.0]])
def test_non_numbers_are_rejected(bad):
    with pytest.raises(ConfigError, match="calcium_arc_deg"):
        GuidanceConfig(calcium_arc_deg=bad)


@pytest.mark.parametrize(
    ("lengths", "match"),
    [
        ([8, 12, 12], "strictly increasing"),
        ([12, 8], "strictly increasing"),
        ([], "empty"),
        ([8, -1], r"stent_lengths_mm\[1\]=-1 is outside"),
        (15, "list of numbers"),
        ("8, 12", "list of numbers"),
        ({"a": 8}, "list of numbers"),
        ([8, "12"], r"stent_lengths_mm\[1\] must be a number"),
    ],
)
def test_stent_lengths_must_be_sorted_positive_numbers(lengths, match):
    with pytest.raises(ConfigError, match=match):
        GuidanceConfig(stent_lengths_mm=lengths)


def test_acceptable_expansion_may_not_exceed_optimal():
    with pytest.raises(ConfigError, match="expansion_acceptable_pct=96 must not exceed"):
        GuidanceConfig(expansion_acceptable_pct=96.0)
    assert GuidanceConfig(expansion_acceptable_pct=95.0).expansion_acceptable_pct == 95.0


def test_integers_become_floats_and_the_config_is_frozen():
    g = GuidanceConfig(calcium_arc_deg=200, stent_lengths_mm=[10, 20])
    assert isinstance(g.calcium_arc_deg, float) and g.stent_lengths_mm == (10.0, 20.0)
    with pytest.raises(ValueError, match="frozen"):
        g.calcium_arc_deg = 100.0  # type: ignore[misc]


def test_round_trip_and_hash():
    custom = Config.from_dict(
        {"guidance": {"malapposition_threshold_um": 160, "stent_lengths_mm": [9, 13]}}
    )
    assert Config.from_dict(custom.to_dict()) == custom
    assert Config.from_dict(custom.to_dict()).config_hash() == custom.config_hash()
    same = Config.from_dict(
        {"guidance": {"malapposition_threshold_um": 160.0, "stent_lengths_mm": [9.0, 13.0]}}
    )
    assert same.config_hash() == custom.config_hash()  # 160 and 160.0 are the same setting
    assert Config().config_hash() != custom.config_hash()
    assert len(custom.config_hash()) == 64 and int(custom.config_hash(), 16) >= 0
    assert Config.from_dict({}) == Config()


def test_default_hash_is_stable():
    # Changing a default threshold changes every audit record: do it on purpose, then update this.
    # Changed when [segment], [metal] and [analysis] joined the audited sections (they shape the
    # results), and again when [metal] gained the partial-shadow strut test (issue 16.6);
    # [guidance] alone still hashes to the value of earlier records, 7ac71513...
    assert Config().config_hash() == (
        "911c32e9366fa92b23ea806c6f93b632eb209396c82c808fa19654d823c52742"
    )
    guidance = json.dumps({"guidance": Config().guidance.to_dict()}, sort_keys=True,
                          separators=(",", ":"))
    assert hashlib.sha256(guidance.encode()).hexdigest().startswith("7ac71513da938a04")


def test_config_rejects_a_wrong_section_type():
    with pytest.raises(ConfigError, match="GuidanceConfig"):
        Config(guidance={"calcium_arc_deg": 180.0})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="table"):
        Config.from_dict([("guidance", {})])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"\[guidance\] must be a table"):
        Config.from_dict({"guidance": 5})


def test_load_config_from_toml(tmp_path):
    path = tmp_path / "octguide.toml"
    path.write_text(
        "[guidance]\n"
        "malapposition_threshold_um = 160\n"
        "stent_lengths_mm = [8, 12, 16, 20]\n"
        "tcfa_lipid_arc_deg = 180.0\n"
    )
    cfg = load_config(path)
    assert cfg.guidance.malapposition_threshold_um == 160.0
    assert cfg.guidance.stent_lengths_mm == (8.0, 12.0, 16.0, 20.0)
    assert cfg.guidance.tcfa_lipid_arc_deg == 180.0
    assert cfg.guidance.calcium_arc_deg == 180.0  # untouched default
    assert load_config(str(path)) == cfg


def test_load_config_errors_start_with_the_path(tmp_path):
    bad_key = tmp_path / "bad_key.toml"
    bad_key.write_text("[guidance]\ncalcium_arc = 180\n")
    with pytest.raises(ConfigError, match=rf"^{bad_key}: unknown key 'calcium_arc'"):
        load_config(bad_key)
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[guidance\n")
    with pytest.raises(ConfigError, match=rf"^{bad_toml}: invalid TOML"):
        load_config(bad_toml)
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match=rf"^{missing}: cannot read"):
        load_config(missing)
    out_of_range = tmp_path / "range.toml"
    out_of_range.write_text("[guidance]\nmsa_min_mm2 = 0\n")
    with pytest.raises(ConfigError, match=r"guidance\.msa_min_mm2=0 is outside 0.5..20 mm2"):
        load_config(out_of_range)


def test_describe_an_instance_shows_its_values():
    rows = {r["name"]: r for r in describe(GuidanceConfig(calcium_arc_deg=200.0))}
    assert rows["calcium_arc_deg"]["value"] == 200.0
    assert rows["stent_lengths_mm"]["value"] == [8.0, 12.0, 15.0, 18.0, 23.0, 28.0, 33.0, 38.0]


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


SECTIONS = [GuidanceConfig, ServerConfig, SegmentConfig, MetalConfig, AnalysisSettings,
            ScanConfig, DisplayConfig, DicomConfig]


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: s.section)
def test_every_number_of_every_section_has_a_unit_a_range_and_a_doc(section):
    for row in describe(section):
        assert row["doc"] and row["source"], (section.section, row["name"])
        if isinstance(row["value"], (int, float)) and not isinstance(row["value"], bool):
            assert row["unit"] and row["low"] is not None and row["high"] is not None, row["name"]
            assert row["low"] <= row["value"] <= row["high"], row["name"]


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: s.section)
def test_every_section_rejects_unknown_keys_and_is_in_config(section):
    with pytest.raises(ConfigError, match=rf"unknown key 'nope' in \[{section.section}\]"):
        Config.from_dict({section.section: {"nope": 1}})
    assert isinstance(getattr(Config(), section.section), section)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"segment": {"runtime": "tensorrt8"}}, (r"segment\.runtime='tensorrt8' is not one of "
                                                  r"'onnxruntime', 'tensorrt' or 'torch-cuda'")),
        ({"segment": {"precision": "int4"}}, r"segment\.precision='int4' is not one of"),
        ({"segment": {"threads": 0}}, r"segment\.threads=0 is outside 1\.\.64 threads"),
        ({"segment": {"threads": 2.0}}, r"segment\.threads must be an integer, got 2\.0"),
        ({"segment": {"runtime": "tensorrt", "fallback": "tensorrt"}}, "must differ"),
        ({"metal": {"peak_margin": 1.5}}, r"metal\.peak_margin=1\.5 is outside 0\.\.1 fraction"),
        ({"analysis": {"catheter_outer_diameter_mm": 5}}, r"catheter_outer_diameter_mm=5 is outside"),
        ({"analysis": {"min_stent_struts": True}}, "must be an integer, got True"),
        ({"scan": {"backend": "opencl"}}, r"scan\.backend='opencl' is not one of"),
        ({"scan": {"strict": "yes"}}, r"scan\.strict must be true or false, got 'yes'"),
        ({"display": {"first_aline_deg": 360}}, r"display\.first_aline_deg=360 is outside"),
        ({"dicom": {"destinations": "PACS@10.0.0.1:104"}}, r"dicom\.destinations must be a list"),
        ({"dicom": {"destinations": ["no-port"]}}, r"destinations\[0\]='no-port' is neither AE_TITLE@"),
        ({"dicom": {"destinations": ["http://pacs host/x"]}}, r"destinations\[0\]=.* nor an http"),
        ({"server": {"frames_endpoint": "tcp://127.0.0.1:99999"}}, "port 99999 is outside 1..65535"),
        ({"server": {"status_endpoint": "127.0.0.1:5557"}}, "is not a ZeroMQ endpoint"),
        ({"server": {"workers": "2"}}, r"server\.workers must be an integer, got '2'"),
    ],
)
def test_new_sections_validate_types_ranges_and_choices_in_one_line(data, match):
    with pytest.raises(ConfigError, match=match) as err:
        Config.from_dict(data)
    assert "\n" not in str(err.value)


def test_new_section_defaults():
    cfg = Config()
    assert (cfg.segment.runtime, cfg.segment.precision, cfg.segment.fallback) == (
        "onnxruntime", "auto", "")
    assert cfg.analysis.catheter_outer_diameter_mm == 0.9
    assert "0.9 mm" in {r["name"]: r for r in describe(AnalysisSettings)}[
        "catheter_outer_diameter_mm"]["source"]
    assert (cfg.dicom.write_sr, cfg.dicom.destinations) == (False, ())
    ok = Config.from_dict({"dicom": {"write_sr": True, "destinations": ["PACS@10.0.0.1:104"]}})
    assert ok.dicom.destinations == ("PACS@10.0.0.1:104",)
    web = Config.from_dict({"dicom": {"destinations": ["http://127.0.0.1:8042/dicom-web"]}})
    assert web.dicom.destinations == ("http://127.0.0.1:8042/dicom-web",)
    assert Config.from_dict({"server": {"frames_endpoint": "tcp://127.0.0.1:*"}})
    assert Config.from_dict({"server": {"frames_endpoint": "ipc:///tmp/octguide-frames"}})
