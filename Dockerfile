# twinode training image: CUDA PyTorch runtime, non-root, twinode-train as entry point.
# Build:  docker build -t twinode .
# Train:  docker run --gpus all --shm-size=2g -v "$PWD/work:/work" twinode trainer=gpu
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    TWINODE_CONFIG_DIR=/opt/twinode/configs TWINODE_ROOT=/work

RUN useradd --create-home --uid 1000 twin && mkdir -p /opt/twinode /work && chown twin /work
WORKDIR /opt/twinode

# Dependencies first (cached across source edits); torch comes from the base image.
COPY pyproject.toml README.md ./
RUN mkdir -p src/twinode && touch src/twinode/__init__.py && pip install . && pip uninstall -y twinode
COPY src ./src
COPY configs ./configs
RUN pip install --no-deps .

USER twin
WORKDIR /work
VOLUME ["/work"]
ENTRYPOINT ["twinode-train"]
