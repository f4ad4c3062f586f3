"""The held-out protocols score every twin on the same targets, whatever seed it trained with."""

from hydra.utils import instantiate

from tests.conftest import COARSE, FAST, compose_train
from twinode.evaluation.protocols import evaluate_twin
from twinode.training.pipeline import build_twin


def _scores(tmp_path, seed: int) -> dict:
    cfg = compose_train(tmp_path / str(seed), FAST + COARSE + ["data.source.n_patients=40", f"seed={seed}"])
    dm = instantiate(cfg.data)
    dm.setup("test")
    twin = build_twin(cfg, dm.dims, dm.spec).eval()
    return evaluate_twin(twin, dm, ("imputation",))["protocols"]["imputation"]


def test_imputation_targets_do_not_depend_on_the_training_seed(tmp_path):
    a, b = _scores(tmp_path, 1), _scores(tmp_path, 7)
    assert a["locf"]["n_targets"] == b["locf"]["n_targets"] > 0
    assert a["locf"]["mse_minmax_pooled"] == b["locf"]["mse_minmax_pooled"]
    assert a["linear_interpolation"]["per_variable"] == b["linear_interpolation"]["per_variable"]
