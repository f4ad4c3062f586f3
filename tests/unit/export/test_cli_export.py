"""twinode-export: a real training checkpoint -> the same twin.pt as the end of training."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import COARSE, FAST, compose_train
from twinode.cli.export import main
from twinode.export.torchscript import load_verified_twin
from twinode.training.pipeline import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    cfg = compose_train(tmp, FAST + COARSE + ["trainer.max_epochs=1", "logger=none", "callbacks.progress_bar=null"])
    return train(cfg)


def test_export_from_checkpoint_reproduces_the_trained_twin(trained, tmp_path, capsys):
    out = tmp_path / "again.pt"
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(trained.best_checkpoint), "--out", str(out), "--run-id", "abc"])
    assert exit_info.value.code == 0 and "exported twin" in capsys.readouterr().out
    twin, meta = load_verified_twin(out)
    ref, ref_meta = load_verified_twin(trained.twin_path)
    assert meta["weights_sha256"] == ref_meta["weights_sha256"]  # same weights, same normalisation
    assert meta["training_run_id"] == "abc" and meta["data_fingerprint"] == ref_meta["data_fingerprint"]
    args = (torch.tensor([0.0, 2.0]), torch.tensor([[80.0, 70.0, 1.0, 37.0]] * 2), torch.ones(2, 4),
            torch.tensor([60.0, 70.0, 1.0]), torch.zeros(0, 4), torch.tensor([4.0, 8.0]))
    with torch.no_grad():
        assert torch.equal(twin.forecast(*args)[0], ref.forecast(*args)[0])


@pytest.mark.parametrize("damage", ["truncated", "garbage", "no_metadata"])
def test_damaged_checkpoints_exit_non_zero_with_a_clear_error(trained, tmp_path, capsys, damage):
    good = open(trained.best_checkpoint, "rb").read()
    bad = tmp_path / "bad.ckpt"
    if damage == "truncated":
        bad.write_bytes(good[: len(good) // 3])
        expected = "not a readable checkpoint (corrupted or truncated?)"
    elif damage == "garbage":
        bad.write_bytes(b"not a checkpoint at all")
        expected = "not a readable checkpoint"
    else:
        ckpt = torch.load(trained.best_checkpoint, map_location="cpu", weights_only=True)
        del ckpt["twinode"]
        torch.save(ckpt, bad)
        expected = "lacks twinode metadata"
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(bad), "--out", str(tmp_path / "x.pt")])
    assert exit_info.value.code == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_unknown_argument_is_a_config_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["ckpt=foo.ckpt", "out=x.pt"])
    assert exit_info.value.code == 2 and "config key 'ckpt'" in capsys.readouterr().err


def test_missing_flags_are_one_error_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", "x.pt"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and err.startswith("error: twinode-export:")
    assert "--checkpoint" in err


def test_the_key_value_spelling_still_exports_with_a_warning(trained, tmp_path, capsys):
    out = tmp_path / "old.pt"
    with pytest.raises(SystemExit) as exit_info:
        main([f"ckpt_path={trained.best_checkpoint}", f"out={out}", "run_id=r1", "trust_checkpoint=false"])
    captured = capsys.readouterr()
    assert exit_info.value.code == 0 and out.is_file()
    assert "key=value arguments are deprecated; use --checkpoint --out --run-id --trust-checkpoint" in captured.err
    assert load_verified_twin(out)[1]["training_run_id"] == "r1"


def test_safe_reader_rebuilds_the_trained_twin(trained):
    from twinode.checkpoint import build_twin, load_checkpoint
    from twinode.data.schema import FeatureSpec

    cfg, meta, state = load_checkpoint(trained.best_checkpoint)
    twin = build_twin(cfg, dict(meta["dims"]), FeatureSpec.from_dict(meta["spec"]))
    twin.load_state_dict(state)  # strict: every weight present, nothing extra
    assert set(state) == set(twin.state_dict())


def test_export_prints_the_file_sha256_and_writes_the_sidecar(trained, tmp_path, capsys):
    from twinode.export.integrity import file_sha256, read_sidecar

    out = tmp_path / "twin.pt"
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(trained.best_checkpoint), "--out", str(out)])
    digest = file_sha256(out)
    assert f"sha256: {digest}" in capsys.readouterr().out
    assert read_sidecar(out) == digest


def test_export_never_overwrites_its_checkpoint(trained, tmp_path, capsys):
    ckpt = tmp_path / "copy.ckpt"
    ckpt.write_bytes(open(trained.best_checkpoint, "rb").read())
    before = ckpt.read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(ckpt), "--out", str(ckpt)])
    assert exit_info.value.code == 2 and "overwrite the checkpoint" in capsys.readouterr().err
    assert ckpt.read_bytes() == before
