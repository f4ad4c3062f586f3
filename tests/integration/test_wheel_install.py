"""`pip install twinode` then `twinode-train` in an empty folder: the configs ship in the wheel.

The wheel is built from a copy of the sources (the checkout stays clean), installed with
``--no-deps`` into a fresh venv that sees the current environment's dependencies through a
``.pth`` file (offline, seconds), and run from an empty folder with no config variables.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds a wheel and trains in a fresh venv (about a minute)

REPO = Path(__file__).resolve().parents[2]
TINY = ["data.source.n_patients=40", "data.batch_size=8", "model.twin.latent_dim=8", "model.twin.hidden=16",
        "model.twin.encoder_hidden=16", "solver.step=2.0", "trainer.max_epochs=1", "callbacks.progress_bar=null"]


def _run(cmd, cwd, env=None, timeout=600) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src-copy"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "src" / "twinode", src / "src" / "twinode",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist"],
         cwd=src)
    wheel = next((tmp / "dist").glob("twinode-*.whl"))

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    site = Path(_run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     cwd=tmp).stdout.strip())
    # The dependencies of this environment, after the venv's own site-packages (where twinode goes).
    (site / "_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps", "-q", wheel],
         cwd=tmp)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "TWINODE_CONFIG_DIR", "TWINODE_ROOT", "MLFLOW_TRACKING_URI", "VIRTUAL_ENV")}
    env.update({"OMP_NUM_THREADS": "1", "PATH": f"{venv / 'bin'}:{env.get('PATH', '')}"})
    return wheel, venv, env


def test_the_wheel_holds_the_configs(installed):
    wheel, venv, env = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert "twinode/configs/train.yaml" in names and "twinode/configs/debug/fast_dev_run.yaml" in names
    assert any(n.startswith("twinode/configs/model/optimizer/") for n in names)
    where = _run([venv / "bin" / "python", "-c", "import twinode.config_dir as c; print(c.config_dir())"],
                 cwd=venv, env=env).stdout.strip()
    assert where.startswith(str(venv)) and Path(where, "train.yaml").is_file()  # not the checkout's


def test_train_from_an_empty_folder(installed, tmp_path):
    _, venv, env = installed
    work = tmp_path / "empty"
    work.mkdir()
    job = _run([venv / "bin" / "twinode-train", "--cfg", "job", "trainer.max_epochs=1"], cwd=work, env=env).stdout
    assert "max_epochs: 1" in job and "twinode.training.lit_module.TwinLitModule" in job
    assert list(work.iterdir()) == []  # --cfg job prints; it writes nothing

    _run([venv / "bin" / "twinode-train", *TINY, "hydra.run.dir=run"], cwd=work, env=env)
    run = work / "run"
    assert (run / "twin.pt").is_file() and (run / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (work / "mlflow.db").is_file()  # the SQLite store in the folder it was started in
    import mlflow

    client = mlflow.tracking.MlflowClient(f"sqlite:///{work}/mlflow.db")
    version = client.get_model_version_by_alias("twinode-synthetic_icu", "candidate")
    assert client.get_run(version.run_id).info.status == "FINISHED"
