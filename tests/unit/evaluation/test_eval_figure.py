"""twinode-eval's figure: drawn from the results dict eval.json holds, its bars are each variable's
MSE over LOCF's, variables without a LOCF error are left out, and a bad --plot stops the CLI first."""

from __future__ import annotations

import copy
import re
import struct

import pytest
from hydra.utils import instantiate

from tests.conftest import COARSE, FAST, compose_train
from twinode.cli.eval import run as eval_main
from twinode.evaluation.figures import COVERAGE_BAND, draw_eval, eval_figure, ratio_rows
from twinode.evaluation.protocols import evaluate_twin
from twinode.training.pipeline import build_twin


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """The real protocols on the small synthetic cohort with an untrained twin (about 2 s)."""
    cfg = compose_train(tmp_path_factory.mktemp("figure"), FAST + COARSE + ["data.source.n_patients=40", "seed=1"])
    dm = instantiate(cfg.data)
    dm.setup("test")
    twin = build_twin(cfg, dm.dims, dm.spec).eval()
    return evaluate_twin(twin, dm)


def _bars(ax) -> dict[str, dict[str, float]]:
    """forecaster -> variable -> where its bar ends (the bars start at LOCF's 1)."""
    names = [re.sub(r" \(n=\d+(, \d+ stays)?\)$", "", t.get_text()) for t in ax.get_yticklabels()]
    out: dict[str, dict[str, float]] = {}
    for container in ax.containers:
        ends = out.setdefault(container.get_label(), {})
        for rect in container:
            assert rect.get_x() == pytest.approx(1.0)
            ends[names[round(rect.get_y() + rect.get_height() / 2)]] = rect.get_x() + rect.get_width()
    return out


def _expected(res: dict, forecasters=("twin", "decay_to_mean", "linear_interpolation", "history_mean")) -> dict:
    locf = res["locf"]["per_variable"]
    return {k: {v: res[k]["per_variable"][v]["mse_minmax"] / locf[v]["mse_minmax"] for v in locf if locf[v]["mse_minmax"] > 0}
            for k in forecasters}


def test_figure_is_a_png_of_the_protocols_and_coverage(results, tmp_path):
    path = eval_figure(results, tmp_path / "sub" / "eval.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 600 and height >= 400 and len(data) > 20_000
    _, axes = draw_eval(results)
    assert set(axes) == {"forecast", "imputation", "coverage"}  # interpolation is not drawn


@pytest.mark.parametrize("proto", ["forecast", "imputation"])
def test_bars_are_each_variables_mse_over_locfs(results, proto):
    res = results["protocols"][proto]
    _, axes = draw_eval(results)
    ax = axes[proto]
    bars, expected = _bars(ax), _expected(res)
    # After the last history point linear interpolation is LOCF: drawn only where it differs.
    if proto == "forecast":
        assert "linear_interpolation" not in bars
        assert all(r == pytest.approx(1.0) for r in expected.pop("linear_interpolation").values())
    else:
        assert "linear_interpolation" in bars
    assert set(bars) == set(expected) and set(bars["twin"]) == set(expected["twin"]) != set()
    for name, ratios in expected.items():
        assert bars[name] == pytest.approx(ratios), name
    labels = [t.get_text() for t in ax.get_yticklabels()]
    order = [re.sub(r" \(n=\d+, \d+ stays\)$", "", t) for t in labels]
    assert [expected["twin"][v] for v in order] == sorted(expected["twin"].values())
    per = res["twin"]["per_variable"]
    assert labels == [f"{v} (n={int(per[v]['n'])}, {per[v]['stays']} stays)" for v in order]
    assert ax.get_xscale() == "log"
    assert any(list(line.get_xdata()) == [1.0, 1.0] for line in ax.get_lines())  # LOCF's line
    twin, locf = res["twin"], res["locf"]
    title = ax.get_title()
    assert f"{twin['mse_minmax_per_variable'] / locf['mse_minmax_per_variable']:.3f} per variable" in title
    assert f"{twin['mse_minmax_pooled'] / locf['mse_minmax_pooled']:.3f} pooled" in title


def test_variables_without_a_locf_error_are_left_out(results):
    res = copy.deepcopy(results)
    for proto in ("forecast", "imputation"):
        for r in res["protocols"][proto].values():
            r["per_variable"]["FLAG"] = {"mse_minmax": 0.0, "n": 12.0}  # a constant channel
            r["per_variable"]["EMPTY"] = {"mse_minmax": 0.0, "n": 0.0}  # no targets
    _, axes = draw_eval(res)
    for proto in ("forecast", "imputation"):
        labels = [t.get_text() for t in axes[proto].get_yticklabels()]
        assert len(labels) == len(results["protocols"][proto]["locf"]["per_variable"])
        assert not [t for t in labels if t.startswith(("FLAG", "EMPTY"))]


def test_a_hand_made_results_dict(tmp_path):
    def scored(per: dict[str, float], **extra) -> dict:
        n = {"A": 10.0, "B": 20.0, "C": 5.0}
        return {"mse_minmax_per_variable": sum(per.values()) / 2, "mse_minmax_pooled": 0.5 * sum(per.values()),
                "per_variable": {v: {"mse_minmax": m, "n": n[v]} for v, m in per.items()}, **extra}

    buckets = {"0-6 h": {"coverage": 0.8, "n": 40.0}, "6-12 h": {"coverage": 0.9, "n": 30.0},
               "12-18 h": {"coverage": 0.97, "n": 3.0}}
    fc = {"twin": scored({"A": 0.03, "B": 0.005, "C": 0.0}, coverage90=0.85, coverage90_by_bucket=buckets),
          "locf": scored({"A": 0.02, "B": 0.01, "C": 0.0}),
          "decay_to_mean": scored({"A": 0.01, "B": 0.01, "C": 0.0}),
          "history_mean": scored({"A": 0.04, "B": 0.02, "C": 0.0})}
    results = {"protocols": {"forecast": fc, "interpolation": copy.deepcopy(fc)}, "risk": {}}
    rows = ratio_rows(fc)
    assert rows.variables == ["B", "A"] and rows.n == [20, 10]
    assert rows.labels() == ["B (n=20)", "A (n=10)"]  # results written before stays were counted
    fc["twin"]["per_variable"]["A"]["stays"] = 4
    assert ratio_rows(fc).labels() == ["B (n=20)", "A (n=10, 4 stays)"]
    assert rows.ratios == {"twin": pytest.approx([0.5, 1.5]), "decay_to_mean": pytest.approx([1.0, 0.5]),
                           "history_mean": pytest.approx([2.0, 2.0])}
    fig, axes = draw_eval(results)
    assert set(axes) == {"forecast", "coverage"}
    assert _bars(axes["forecast"]) == {"twin": pytest.approx({"B": 0.5, "A": 1.5}),
                                       "decay_to_mean": pytest.approx({"B": 1.0, "A": 0.5}),
                                       "history_mean": pytest.approx({"B": 2.0, "A": 2.0})}
    assert "twin / LOCF: 1.167 per variable, 1.167 pooled" in axes["forecast"].get_title()
    cov = axes["coverage"]
    twin_line = [ln for ln in cov.get_lines() if ln.get_label() == "twin"][0]
    assert list(twin_line.get_ydata()) == [0.8, 0.9, 0.97]
    assert [t.get_text() for t in cov.get_xticklabels()] == ["0-6 h\nn=40", "6-12 h\nn=30", "12-18 h\nn=3"]
    band = [p for p in cov.patches if p.get_label() == "0.85-0.95"][0]
    assert (band.get_y(), band.get_y() + band.get_height()) == pytest.approx(COVERAGE_BAND)
    # Without the buckets (a twin without intervals) there is no coverage panel.
    del fc["twin"]["coverage90_by_bucket"]
    assert set(draw_eval(results)[1]) == {"forecast"}
    assert eval_figure(results, tmp_path / "eval.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match="nothing to draw"):
        draw_eval({"protocols": {"interpolation": fc}, "risk": {}})


@pytest.mark.parametrize("extra, message", [
    (["--plot", "out.txt"], "unknown output format '.txt'"),
    (["--plot", "out.png", "--protocol", "interpolation"], "--plot draws the forecast and imputation protocols"),
])
def test_eval_refuses_a_bad_plot_before_any_work(tmp_path, capsys, extra, message):
    # The checkpoint does not exist: the refusal comes before it is read.
    argv = ["--checkpoint", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "eval")]
    assert eval_main(argv + [a if not a.startswith("out.") else str(tmp_path / a) for a in extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --plot") and message in err
    assert not (tmp_path / "eval").exists()
