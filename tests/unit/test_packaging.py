"""The configs travel with the package, and the Docker image uses them from there."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from twinode.config_dir import PKG_URI, candidate_dirs, config_dir, shipped_dir

REPO = Path(__file__).resolve().parents[2]


def test_configs_are_package_data():
    shipped = shipped_dir()
    assert shipped == REPO / "src" / "twinode" / "configs" and (shipped / "train.yaml").is_file()
    assert (shipped / "__init__.py").is_file() and PKG_URI == "pkg://twinode.configs"
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["twinode"]
    assert "configs/**/*.yaml" in data
    assert not (REPO / "configs").exists()  # one copy, inside the package


def test_config_dir_prefers_a_complete_user_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("TWINODE_CONFIG_DIR", raising=False)
    assert config_dir() == str(shipped_dir().resolve())
    (tmp_path / "train.yaml").write_text("seed: 1\n")
    monkeypatch.setenv("TWINODE_CONFIG_DIR", str(tmp_path))
    assert config_dir() == str(tmp_path.resolve())
    assert candidate_dirs() == [tmp_path, shipped_dir()]


def test_dockerfile_pins_its_base_runs_unprivileged_and_reads_the_packaged_configs():
    text = (REPO / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, flags=re.M).group(1)
    assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", base)
    user = text.index("\nUSER twin\n")
    assert user < text.index("\nENTRYPOINT ")
    assert "TWINODE_CONFIG_DIR" not in text and "COPY configs" not in text


def test_lint_runs_in_ci():
    assert re.search(r"^lint: .*\n(\t.*\n)*\t\$\(VENV\)/bin/ruff check src\n\t\$\(VENV\)/bin/mypy\n",
                     (REPO / "Makefile").read_text(), flags=re.M)
    ci = (REPO / ".ci" / "run").read_text()
    assert ci.index("make lint") < ci.index("make test")


def test_training_code_imports_without_mlflow():
    """A GPU box that trains or benchmarks with logger=none need not carry mlflow: the
    pipeline imports it only where a store is opened."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['mlflow'] = None\n"  # any `import mlflow` now raises ImportError
            "import twinode.training.pipeline, twinode.tracking.mlflow_store as m\n"
            "print(m.default_tracking_uri().startswith('sqlite:///'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "True"
