# syntax=docker/dockerfile:1
# LDH Assist service image: `ldh serve` (DICOM node + REST API + web page + OHIF viewer at /viewer), the shipped
# models baked in (package data), the locked dependency set, a non-root user. pipelines/Dockerfile builds the
# Vertex components image from this one, so Vertex runs the same tested package.
# The base images are build arguments so the same file builds where no registry is reachable (a local Debian
# bookworm root file system imported as an image: scripts/container_check.sh); the defaults are the published ones.
# BASE_IMAGE must run Python 3.11 as `python` (the lock is resolved for CPython 3.11), NODE_IMAGE must have npm.
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim

# --- the prebuilt OHIF viewer, fetched and integrity-checked by the project's own script
FROM ${NODE_IMAGE} AS viewer
WORKDIR /src/viewer_plugin
COPY viewer_plugin/package.json viewer_plugin/install-ohif.sh ./
RUN ./install-ohif.sh

# --- the project and its locked dependencies in one virtual environment
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY ai_service ai_service
COPY dicom_node dicom_node
COPY pipelines pipelines
COPY viewer_plugin viewer_plugin
# no dependency resolution past the lock; built in pip's isolated environment, as scripts/setup.sh does (the lock's
# packaging 23.2, which checkov pins, is too old for the locked setuptools: the first real build failed on it)
RUN pip install --no-deps /src

# --- runtime
FROM ${BASE_IMAGE} AS service
LABEL org.opencontainers.image.title="LDH Assist" \
      org.opencontainers.image.description="Lumbar disc herniation AI beside a PACS (research software, not a medical device)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 ldh \
 && useradd --system --uid 10001 --gid ldh --home-dir /data --no-create-home ldh \
 && mkdir /data && chown ldh:ldh /data
COPY --from=build /opt/venv /opt/venv
COPY --from=viewer /src/viewer_plugin/ohif/dist /opt/ohif/dist
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LDH_DATA_DIR=/data \
    LDH_API_HOST=0.0.0.0 \
    LDH_VIEWER_OHIF_DIR=/opt/ohif/dist
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 11112 8080
# /readyz answers 200 once the models are loaded; python, because the slim image has no curl
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('LDH_API_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["ldh"]
CMD ["serve"]
