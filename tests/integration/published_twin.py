"""A real training run with MLflow (SQLite) and the registry on: the twin a consumer gets."""

from __future__ import annotations

import os
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
    # Lightning's MLFlowLogger sets $MLFLOW_TRACKING_URI (mlflow.set_tracking_uri writes it), which
    # the train config reads: restore it so later tests in this process get their own store.
    env = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        result = train(cfg)
    finally:
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env
    return Published(result, f"sqlite:///{root}/mlflow.db", MODEL_NAME, root)
