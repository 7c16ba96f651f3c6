# syntax=docker/dockerfile:1.7
# The app image: every Meterplane service (`meterplane <command>`) of one release.
# Build from the repository root:
#   docker build -f docker/Dockerfile.app -t ghcr.io/meterplane/meterplane:$(VERSION) .
# The environment is exactly uv.lock (frozen, no dev group); the tag is the release version.

# --- build: resolve the locked environment into /opt/meterplane -------------------------
FROM python:3.11.14-slim-bookworm AS build
# A C compiler for the aggregator's native core (build stage only).
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/meterplane
RUN python -m pip install "uv==0.13.8"
WORKDIR /src
# Dependencies first (cached until the lock changes), then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY app ./app
COPY components ./components
COPY infra ./infra
COPY policies ./policies
RUN uv sync --frozen --no-dev --no-editable
# The native core next to the installed package, with the flags `make setup` uses; a
# failed compile fails the build (the image must count as fast as a checkout does).
RUN /opt/meterplane/bin/python -m meterplane.aggregate.build_native \
 && /opt/meterplane/bin/python -c "import meterplane.aggregate._native"

# --- runtime: the interpreter, the environment, nothing else ----------------------------
FROM python:3.11.14-slim-bookworm AS runtime
LABEL org.opencontainers.image.source="https://github.com/meterplane/meterplane" \
      org.opencontainers.image.title="meterplane" \
      org.opencontainers.image.licenses="Apache-2.0"
# The uid/gid the pod security context runs as (components/k8s/pods.py RUN_AS_USER).
RUN groupadd --system --gid 10001 meterplane \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin meterplane \
 && install -d -o 10001 -g 10001 /var/lib/meterplane
# Owned by root and read-only to the app: the container runs with a read-only root fs.
COPY --from=build /opt/meterplane /opt/meterplane
ENV PATH=/opt/meterplane/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    METERPLANE_DATA_DIR=/var/lib/meterplane
USER 10001:10001
WORKDIR /var/lib/meterplane
EXPOSE 8080
# uvicorn drains in-flight requests on SIGTERM; the entrypoint must be the process itself.
ENTRYPOINT ["meterplane"]
CMD ["--help"]
