# syntax=docker/dockerfile:1
# CPU image by default; `--build-arg TORCH_VARIANT=cuda` for a GPU host (run with --gpus all).
# The base image is an argument so the image also builds where no registry is reachable.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
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
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
# The project itself; its dependencies are pinned by range in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install ${PIP_EXTRA_ARGS} ".[train]"

# Optional: bake a zero-shot registry from pretrained weights (needs network access), e.g.
# --build-arg BAKE_ZEROSHOT="ViT-B-16 openai"
FROM build AS registry
ARG BAKE_ZEROSHOT=""
RUN mkdir -p /models && if [ -n "$BAKE_ZEROSHOT" ]; then \
      set -- $BAKE_ZEROSHOT; \
      python -m service.trainer zeroshot --model-store /models --backbone "$1" --pretrained "$2" \
        --task age --task aesthetics --task decade; \
    fi

FROM ${BASE_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 \
    OCLIP_HOST=0.0.0.0 OCLIP_PORT=8000 OCLIP_MODEL_STORE=/models OCLIP_LOG_FORMAT=json
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /nonexistent --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY --from=registry --chown=app:app /models /models
USER 10001:10001
WORKDIR /tmp
VOLUME ["/models"]
EXPOSE 8000
# Readiness doubles as the container health: loaded, warmed up and not draining.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
# SIGTERM drains: /readyz turns 503, accepted requests finish, exit 0 (OCLIP_SHUTDOWN_GRACE_S).
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "service"]
