"""The safe checkpoint reader: no code runs from a checkpoint file, neither by unpickling nor
through ``_target_`` entries of its stored config, unless the user says they trust it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import COARSE, FAST, compose_train
from twinode.checkpoint import ALLOWED_TARGETS, allowed_targets, build_twin, check_targets, instantiate_checked, load_checkpoint
from twinode.cli.export import main as export_main
from twinode.data.simulators.synthetic_icu import feature_spec
from twinode.errors import ConfigError, ExportError
from twinode.training.resume import resume_point

DIMS = {"n_measurements": 4, "n_static": 3, "n_interventions": 1}
NORMALISER = {"meas_mean": [85.0, 75.0, 0.8, 37.0], "meas_std": [12.0, 10.0, 0.4, 0.6],
              "static_mean": [62.0, 78.0, 0.5], "static_std": [14.0, 15.0, 0.5], "dose_scale": [6.0]}


class RunsOnLoad:
    """Unpickling this calls ``open(marker, "w")``: a stand-in for arbitrary code in a crafted .ckpt."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _config(tmp_path) -> dict:
    cfg = compose_train(tmp_path, FAST + COARSE)
    return OmegaConf.to_container(cfg, resolve=True)


def _checkpoint(tmp_path, config: dict, **extra) -> Path:
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "twinode": {"config": config, "dims": DIMS, "spec": feature_spec().to_dict(),
                                              "normaliser": NORMALISER}, **extra}, path)
    return path


def test_unpickling_code_is_refused_everywhere(tmp_path, capsys):
    marker = tmp_path / "ran.txt"
    ckpt = _checkpoint(tmp_path, _config(tmp_path), evil=RunsOnLoad(marker))
    with pytest.raises(ExportError, match="could run code.*trust_checkpoint=true"):
        load_checkpoint(ckpt)
    assert not marker.exists()

    with pytest.raises(SystemExit) as exit_info:  # twinode-export
        export_main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "twin.pt")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "trust_checkpoint=true" in err and not marker.exists() and not (tmp_path / "twin.pt").exists()

    run = tmp_path / "run"  # resume=<folder> without run.json used to unpickle fully
    (run / "checkpoints").mkdir(parents=True)
    ckpt.rename(run / "checkpoints" / "last.ckpt")
    with pytest.raises(ConfigError, match="cannot be read.*trust"):
        resume_point(str(run), None, tmp_path / "elsewhere")
    assert not marker.exists()


def test_trust_is_the_explicit_escape_hatch(tmp_path):
    marker = tmp_path / "ran.txt"
    ckpt = _checkpoint(tmp_path, _config(tmp_path), evil=RunsOnLoad(marker))
    cfg, meta, state = load_checkpoint(ckpt, trust=True)
    assert marker.exists() and state == {} and meta["dims"] == DIMS


@pytest.mark.parametrize("where", ["solver", "model.twin", "model.twin.mechanistic"])
def test_config_targets_outside_twinode_are_not_instantiated(tmp_path, capsys, where):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    config = _config(tmp_path)
    *parents, key = where.split(".")
    node = config
    for k in parents:
        node = node[k]
    node[key] = {"_target_": "builtins.open", "file": str(victim), "mode": "w"}
    ckpt = _checkpoint(tmp_path, config)
    with pytest.raises(SystemExit) as exit_info:
        export_main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "twin.pt")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert f"'{where}._target_' names 'builtins.open'" in err and "trust_checkpoint=true" in err
    assert victim.read_text() == "precious" and not (tmp_path / "twin.pt").exists()


def test_data_config_is_checked_before_instantiation(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    config = _config(tmp_path)
    config["data"]["source"] = {"_target_": "builtins.open", "file": str(victim), "mode": "w"}
    cfg, _, _ = load_checkpoint(_checkpoint(tmp_path, config))
    with pytest.raises(ExportError, match=r"'data.source._target_' names 'builtins.open'"):
        instantiate_checked(cfg.data, "data")
    assert victim.read_text() == "precious"


def test_interpolations_in_a_stored_config_are_refused(tmp_path):
    config = _config(tmp_path)
    config["data"]["batch_size"] = "${oc.env:HOME}"
    with pytest.raises(ExportError, match=r"interpolation at config.data.batch_size.*trust"):
        load_checkpoint(_checkpoint(tmp_path, config))


def test_every_twinode_target_in_configs_is_allowed():
    import re

    targets = set()  # the groups a checkpoint's config is built from: data, model, solver (and overlays)
    configs = Path(__file__).resolve().parents[2] / "src" / "twinode" / "configs"
    for group in ("data", "model", "solver", "experiment"):
        for path in (configs / group).rglob("*.yaml"):
            targets |= set(re.findall(r"^\s*_target_:\s*(twinode\.\S+)", path.read_text(), flags=re.M))
    assert targets and targets <= allowed_targets()
    assert ALLOWED_TARGETS <= allowed_targets()
    assert all(t.startswith("twinode.") for t in allowed_targets())  # nothing else, whatever the configs say


def test_build_twin_from_the_shipped_configs_needs_no_trust(tmp_path):
    cfg = compose_train(tmp_path, FAST + COARSE + ["model=latent_ode_hybrid"])
    check_targets(cfg.model.twin, "model.twin")
    twin = build_twin(cfg, DIMS, feature_spec())
    assert sum(p.numel() for p in twin.parameters()) > 0


def test_legacy_import_path_still_works():
    from twinode.training.pipeline import build_twin as legacy

    assert legacy is build_twin
