"""A real training run with MLflow (SQLite) and the registry on: the twin a consumer gets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.conftest import COARSE, FAST, compose_train
from twinode.training.pipeline import TrainResult, train

MODEL_NAME = "twinode-test-icu"


@dataclass
class Published:
    result: TrainResult
    tracking_uri: str
    name: str
    root: Path


def train_and_publish(root: Path) -> Published:
    cfg = compose_train(root, FAST + COARSE + ["trainer.max_epochs=1", "callbacks.progress_bar=null",
                                               f"registry.model_name={MODEL_NAME}"])
    result = train(cfg)
    return Published(result, f"sqlite:///{root}/mlflow.db", MODEL_NAME, root)
