"""twinode-info: a twin's inputs, outputs and reader policies from its metadata."""

from __future__ import annotations

import json

import pytest

from twinode.cli.info import main


def test_info_lists_names_kinds_amount_units_and_policies(twin_file, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(twin_file)])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for text in ("dataset synthetic_icu", "training run run-123", "HR", "bpm", "LACTATE", "log1p", "valid [20.0, 250.0] (drop)",
                 "VASO", "bolus", "amount in mcg/kg", "AGE", "outcomes: DEATH", "reader policies (version 1)", "open_infusion"):
        assert text in out, text


def test_info_json_gives_the_rate_codes_amount_unit(tmp_path, capsys):
    from twinode.data.spec_files import load_spec
    from tests.unit.export.test_event_rules import export_for

    export_for(load_spec("mimic_iv_demo"), tmp_path / "twin.pt")
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "twin.pt"), "--json"])
    assert e.value.code == 0
    d = json.loads(capsys.readouterr().out)
    norepi = next(i for i in d["interventions"] if i["name"] == "Norepinephrine")
    assert norepi == {"name": "Norepinephrine", "kind": "infusion", "code": "INFUSION_START//221906", "event_value": "rate",
                      "event_unit": "mcg/kg/min", "amount_unit": "mcg/kg", "end_code": "INFUSION_END//221906",
                      "max_dose": None, "min_spacing_h": None}
    assert d["window_start"] == "ICU_ADMISSION// (prefix)" and d["window_hours"] == 48
    sbp = next(m for m in d["measurements"] if m["name"] == "SBP")
    assert sbp["code"].endswith("(regex)") and sbp["valid_range"] == [20, 300]


def test_info_on_a_missing_file_is_one_error_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "nope.pt")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope.pt" in err and "Traceback" not in err
