# syntax=docker/dockerfile:1
# The mugpos images: one for CPU, one for NVIDIA GPUs, each for the API and every worker role
# (the command picks: `mugpos api`, `mugpos worker --stage ...`, `mugpos setup`).
#
#   docker build --target cpu -t mugpos:0.1.0-cpu .
#   docker build --target gpu -t mugpos:0.1.0-gpu .
#   docker build --target cpu --build-arg SOURCE_COMMIT="$(git rev-parse HEAD)" -t ... .
#
# Layers, cheapest change last: OS packages and the non-root user; the Python dependencies, read
# from pyproject.toml alone (a code change never reinstalls torch); the project itself as a wheel
# installed with --no-deps; checks (licences of the installed set, the bundled models).
#
# torch: the cpu target installs it from PyTorch's own CPU index (TORCH_INDEX_URL,
# https://download.pytorch.org/whl/cpu: a few hundred MB instead of several GB of CUDA libraries);
# the gpu target from PyPI, whose Linux torch is the CUDA build (it brings its CUDA libraries as
# nvidia-* wheels; the CUDA runtime base image supplies the container setup the NVIDIA runtime
# expects). The engine builder (`mugpos models build-engine`) needs TensorRT: gpu target only.

# checkov:skip=CKV_DOCKER_7: the base images are pinned by the ARGs below (exact versions, checked by tests/deploy); checkov does not resolve ARGs in FROM
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-runtime-ubuntu24.04

# ---------------------------------------------------------------------------------------------
# The project as a wheel (pure Python, the same for both targets). .dockerignore lets in only what
# the wheel is built from.
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --disable-pip-version-check --no-deps --wheel-dir /wheels . \
    && ls /wheels/mugpos-*.whl

# ---------------------------------------------------------------------------------------------
# CPU: OS layer.
FROM ${PYTHON_IMAGE} AS cpu-os
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0t64 \
    && rm -rf /var/lib/apt/lists/*
ENV VIRTUAL_ENV=/opt/mugpos \
    PATH=/opt/mugpos/bin:$PATH \
    HOME=/home/mugpos \
    MUGPOS_MODEL_CACHE_DIR=/home/mugpos/.cache/mugpos/models \
    YOLO_CONFIG_DIR=/home/mugpos/.cache/ultralytics \
    MPLCONFIGDIR=/home/mugpos/.cache/matplotlib \
    YOLO_OFFLINE=1 \
    YOLO_AUTOINSTALL=0 \
    HF_HUB_OFFLINE=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The runtime user: a fixed uid (Kubernetes runAsUser), a home of its own with the model cache.
RUN groupadd --gid 10001 mugpos \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/mugpos \
        --shell /usr/sbin/nologin mugpos \
    && install -d -o mugpos -g mugpos /home/mugpos/.cache/mugpos/models \
        /home/mugpos/.cache/ultralytics /home/mugpos/.cache/matplotlib

# CPU: dependency layer, from pyproject.toml only.
FROM cpu-os AS cpu-deps
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY pyproject.toml deploy/docker/requirements.py /tmp/deps/
RUN python -m venv /opt/mugpos \
    && python /tmp/deps/requirements.py /tmp/deps/pyproject.toml /tmp/deps \
    && pip install --index-url "${TORCH_INDEX_URL}" -r /tmp/deps/torch.txt \
    && pip install -r /tmp/deps/rest.txt \
    && rm -rf /tmp/deps

# CPU: the image.
FROM cpu-os AS cpu
ARG SOURCE_COMMIT=""
# Every model version under assets/models (tests/deploy checks the list), loaded from the wheel
# and verified against its manifest's sha256 sums.
ARG BUNDLED_MODELS="mugdet-synth:1.0.0 mugdet-synth:1.1.0"
ENV MUGPOS_SOURCE_COMMIT=${SOURCE_COMMIT} \
    MUGPOS_DEVICE=cpu
COPY --from=cpu-deps /opt/mugpos /opt/mugpos
COPY deploy/docker/healthcheck.py /usr/local/lib/mugpos/healthcheck.py
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-deps /wheels/mugpos-*.whl
USER 10001:10001
WORKDIR /home/mugpos
# On the installed set of this image, as the runtime user: the licences, and the bundled models.
RUN mugpos licences --installed \
    && export MUGPOS_OBJECT_STORE=/tmp/mugpos-no-store \
    && mugpos models list \
    && for ref in ${BUNDLED_MODELS}; do mugpos models pull "$ref" || exit 1; done \
    && rm -rf /tmp/mugpos-no-store
EXPOSE 8000 9100
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/lib/mugpos/healthcheck.py"]
CMD ["mugpos", "api", "--host", "0.0.0.0", "--port", "8000"]

# ---------------------------------------------------------------------------------------------
# GPU: OS layer, on the CUDA runtime base (Ubuntu 24.04, Python 3.12).
FROM ${CUDA_IMAGE} AS gpu-os
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 python3.12-venv ca-certificates \
        libgl1 libglib2.0-0t64 \
    && rm -rf /var/lib/apt/lists/*
ENV VIRTUAL_ENV=/opt/mugpos \
    PATH=/opt/mugpos/bin:$PATH \
    HOME=/home/mugpos \
    MUGPOS_MODEL_CACHE_DIR=/home/mugpos/.cache/mugpos/models \
    YOLO_CONFIG_DIR=/home/mugpos/.cache/ultralytics \
    MPLCONFIGDIR=/home/mugpos/.cache/matplotlib \
    YOLO_OFFLINE=1 \
    YOLO_AUTOINSTALL=0 \
    HF_HUB_OFFLINE=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --gid 10001 mugpos \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/mugpos \
        --shell /usr/sbin/nologin mugpos \
    && install -d -o mugpos -g mugpos /home/mugpos/.cache/mugpos/models \
        /home/mugpos/.cache/ultralytics /home/mugpos/.cache/matplotlib

# GPU: dependency layer, from pyproject.toml only; TensorRT for `mugpos models build-engine`.
FROM gpu-os AS gpu-deps
ARG TORCH_INDEX_URL=https://pypi.org/simple
ARG TENSORRT_REQUIREMENT="tensorrt-cu13>=11.4,<12"
COPY pyproject.toml deploy/docker/requirements.py /tmp/deps/
RUN python3.12 -m venv /opt/mugpos \
    && python /tmp/deps/requirements.py /tmp/deps/pyproject.toml /tmp/deps \
    && pip install --index-url "${TORCH_INDEX_URL}" -r /tmp/deps/torch.txt \
    && pip install -r /tmp/deps/rest.txt "${TENSORRT_REQUIREMENT}" \
    && rm -rf /tmp/deps

# GPU: the image.
FROM gpu-os AS gpu
ARG SOURCE_COMMIT=""
# Every model version under assets/models (tests/deploy checks the list), loaded from the wheel
# and verified against its manifest's sha256 sums.
ARG BUNDLED_MODELS="mugdet-synth:1.0.0 mugdet-synth:1.1.0"
ENV MUGPOS_SOURCE_COMMIT=${SOURCE_COMMIT} \
    MUGPOS_DEVICE=cuda:0 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
COPY --from=gpu-deps /opt/mugpos /opt/mugpos
COPY deploy/docker/healthcheck.py /usr/local/lib/mugpos/healthcheck.py
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-deps /wheels/mugpos-*.whl
USER 10001:10001
WORKDIR /home/mugpos
RUN mugpos licences --installed \
    && export MUGPOS_OBJECT_STORE=/tmp/mugpos-no-store \
    && mugpos models list \
    && for ref in ${BUNDLED_MODELS}; do mugpos models pull "$ref" || exit 1; done \
    && rm -rf /tmp/mugpos-no-store
EXPOSE 8000 9100
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/lib/mugpos/healthcheck.py"]
CMD ["mugpos", "worker", "--stage", "inference"]
