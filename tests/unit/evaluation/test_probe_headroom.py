"""scripts/probe_headroom.py collects the same targets and errors as the held-out protocols score."""

import importlib.util

import numpy as np
import pytest
from hydra.utils import instantiate

from tests.conftest import COARSE, FAST, REPO, compose_train
from twinode.evaluation.protocols import evaluate_twin
from twinode.training.pipeline import build_twin


@pytest.mark.parametrize("protocol", ["forecast", "imputation"])
def test_the_probes_rows_reproduce_the_protocols_scores(tmp_path, protocol):
    spec = importlib.util.spec_from_file_location("probe_headroom", REPO / "scripts" / "probe_headroom.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    cfg = compose_train(tmp_path, FAST + COARSE + ["data.source.n_patients=40", "seed=3"])
    dm = instantiate(cfg.data)
    dm.setup("test")
    twin = build_twin(cfg, dm.dims, dm.spec).eval()
    rows = probe.collect(twin, dm, dm.splits["tuning"], protocol)
    dm.splits["held_out"] = dm.splits["tuning"]
    want = evaluate_twin(twin, dm, (protocol,))["protocols"][protocol]
    n = len(dm.spec.measurements)
    assert len(rows["y"]) == want["twin"]["n_targets"] > 0
    pooled, per = probe.scores(rows, rows["twin"], n)
    assert pooled == pytest.approx(want["twin"]["mse_minmax_pooled"] * 1e3, rel=1e-4)
    assert per == pytest.approx(want["twin"]["mse_minmax_per_variable"] * 1e3, rel=1e-4)
    locf_pooled, _ = probe.scores(rows, rows["own"][:, 10], n)
    assert locf_pooled == pytest.approx(want["locf"]["mse_minmax_pooled"] * 1e3, rel=1e-4)
    assert rows["cross"].shape == (len(rows["y"]), 4 * n) and np.isfinite(rows["own"]).all()
