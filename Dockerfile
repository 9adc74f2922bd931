# syntax=docker/dockerfile:1
# One image for every Vigil app: `python -m apps.<app id>` picks the app, APP_PORT its port (as under
# `dapr run`); the Dapr sidecar is daprd, injected beside it on Kubernetes. Build: `make image`.
#
# The base is pinned to a Python patch release on a Debian release, the Python the tests run on. For
# byte-for-byte rebuilds pin its digest too: --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only [project] dependencies (no dev extras), read from pyproject.toml so the image cannot drift from
# it. The package itself is not installed: the apps run from the source tree, where they find
# profiles/ and data/ beside apps/.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --requirement requirements.txt
COPY apps/ /app/apps/
COPY profiles/ /app/profiles/
# The C-MAPSS files: training fits its first model on FD001 when the registry has none. AI4I 2020: a
# `dataset` job of the milling profile's failure model.
COPY data/cmapss/ /app/data/cmapss/
COPY data/ai4i2020/ai4i2020.csv /app/data/ai4i2020/ai4i2020.csv
# Compiled here because the running container's root filesystem is read-only.
RUN /opt/venv/bin/python -m compileall -q /app/apps

FROM ${PYTHON_IMAGE}
# libgomp1: LightGBM (training) links the system's OpenMP runtime; every other wheel brings its own
# libraries. Its version is the base image's Debian release's (exact pins vanish with point releases).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 vigil \
    && useradd --system --uid 10001 --gid vigil --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin vigil
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
# VIGIL_HOST: a container's loopback is unreachable from outside it (probes, Services, docker -p).
# HOME: the user has none, and libraries that cache under ~ need a writable place (/tmp is an
# emptyDir on Kubernetes).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    VIGIL_HOST=0.0.0.0
WORKDIR /app
USER 10001:10001
# Every run sets APP_PORT (dapr run, the Deployments, `docker run -e APP_PORT=8001 ... apps.ingestion`);
# urlopen raises on a refused connection and on a non-2xx answer, so either makes the check fail.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['APP_PORT'] + '/healthz', timeout=4)"]
ENTRYPOINT ["python", "-m"]
