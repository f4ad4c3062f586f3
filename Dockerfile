# syntax=docker/dockerfile:1
# twinode training image: CUDA PyTorch runtime, non-root, twinode-train as entry point.
#   docker build -t twinode:0.1.0 .
#   docker run --gpus all --init --shm-size=8g -v "$PWD/work:/work" twinode:0.1.0 trainer=gpu
# More (DDP, sweeps, mlflow server): README "Docker" and docs/scaling.md.
# The base is pinned by tag and digest (linux/amd64, the only platform of this tag), so a
# rebuild gets the same layers even if the tag is moved. To move to another tag:
#   docker buildx imagetools inspect pytorch/pytorch:<tag>   (prints its Digest: sha256:...)
ARG BASE_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime@sha256:c8268a92a69bd500f8be0e665b2630ee006dadaf7bfbc24249141b15ff622755
FROM ${BASE_IMAGE}

ARG OPTUNA_SWEEPER=hydra-optuna-sweeper==1.3.0
# pyproject extras to install: scale (Optuna, submitit); add wandb for logger=[mlflow,wandb].
ARG EXTRAS=scale
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TWINODE_ROOT=/work \
    MPLCONFIGDIR=/tmp/matplotlib

# tini reaps DDP worker processes and forwards SIGTERM/SIGINT so Lightning can stop cleanly;
# git lets runs record the commit when /work is a checkout.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini git \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 --shell /usr/sbin/nologin twin \
 && mkdir -p /opt/twinode /work && chown twin:twin /work

WORKDIR /opt/twinode
# Dependencies first, from pyproject.toml alone, so source edits reuse this layer. torch comes
# from the base image (pyproject asks torch>=2.4, which it satisfies: pip keeps it).
COPY pyproject.toml README.md ./
RUN mkdir -p src/twinode && touch src/twinode/__init__.py \
 && pip install ".[${EXTRAS}]" \
 && pip install --no-deps "${OPTUNA_SWEEPER}" \
 && pip uninstall -y twinode \
 && rm -rf src
# The Hydra configs ship inside the package (twinode/configs): nothing else to copy or point at.
COPY src ./src
RUN pip install --no-deps . && rm -rf src build \
 && python -c "import torch; from twinode.config_dir import config_dir; print('twinode on torch', torch.__version__, 'configs in', config_dir())"

USER twin
WORKDIR /work
VOLUME ["/work"]
# DataLoader workers pass batches through /dev/shm (64 MB by default in Docker): run with
# --shm-size=8g (or --ipc=host) before raising data.num_workers above its default 0.
ENTRYPOINT ["tini", "--", "twinode-train"]
