# syntax=docker/dockerfile:1
# CPU image by default; `--build-arg TORCH_VARIANT=cuda` for a GPU host (run with --gpus all).
# The base image is an argument so the image also builds where no registry is reachable.
ARG BASE_IMAGE=python:3.11-slim

# -- dependencies: changes only when pyproject.toml or the torch choice does -----------------
FROM ${BASE_IMAGE} AS deps
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_INDEX_URL=""
# Extra pip options, e.g. "--find-links http://127.0.0.1:8765/" for a local wheel mirror.
ARG PIP_EXTRA_ARGS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_CERT=/etc/ssl/certs/ca-certificates.crt
# Extra CA certificates (a TLS-inspecting proxy); the folder is empty by default.
COPY docker/ca-certificates/ /usr/local/share/ca-certificates/extra/
RUN if command -v update-ca-certificates >/dev/null; then update-ca-certificates; fi
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first and on its own: CPU wheels from PyTorch's CPU index, CUDA wheels from PyPI.
# hadolint ignore=DL3013
RUN index="${TORCH_INDEX_URL}"; \
    if [ -z "$index" ] && [ "$TORCH_VARIANT" = "cpu" ]; then index=https://download.pytorch.org/whl/cpu; fi; \
    pip install ${PIP_EXTRA_ARGS} ${index:+--extra-index-url "$index"} \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"
# The project's dependencies (ranges in pyproject.toml) without its code, so that editing
# the code does not rebuild this multi-gigabyte layer.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service/imaging/faces/weights-requirements.txt /tmp/face-weights.txt
# hadolint ignore=DL3013
RUN mkdir service && touch service/__init__.py \
    && extras=train && if [ "$TORCH_VARIANT" = "cpu" ]; then extras=train,onnx,openvino; fi \
    && pip install ${PIP_EXTRA_ARGS} ".[$extras]" && pip uninstall -y ordinal-service \
    && pip install ${PIP_EXTRA_ARGS} --no-deps --require-hashes -r /tmp/face-weights.txt \
    && rm -rf service

# -- optional: bake a zero-shot registry from pretrained weights (needs network access) ------
# --build-arg BAKE_ZEROSHOT="ViT-B-16 openai"
FROM deps AS registry
ARG BAKE_ZEROSHOT=""
COPY service /app/service
ENV PYTHONPATH=/app
RUN mkdir -p /models && if [ -n "$BAKE_ZEROSHOT" ]; then \
      set -- $BAKE_ZEROSHOT; \
      python -m service.trainer zeroshot --model-store /models --backbone "$1" --pretrained "$2" \
        --task age --task aesthetics --task decade; \
    fi

# -- runtime ---------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/app PYTHONUNBUFFERED=1 \
    OCLIP_HOST=0.0.0.0 OCLIP_PORT=8000 OCLIP_MODEL_STORE=/models OCLIP_LOG_FORMAT=json \
    OCLIP_RUNTIME=auto
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /nonexistent --shell /usr/sbin/nologin app
COPY --from=deps /opt/venv /opt/venv
COPY --from=registry --chown=10001:10001 /models /models
COPY service /app/service
USER 10001:10001
WORKDIR /tmp
VOLUME ["/models"]
EXPOSE 8000
# Readiness doubles as the container health: loaded, warmed up and not draining.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('OCLIP_PORT', '8000'), timeout=2)"]
# SIGTERM drains: /readyz turns 503, accepted requests finish, exit 0 (OCLIP_SHUTDOWN_GRACE_S).
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "service"]
