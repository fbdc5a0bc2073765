# syntax=docker/dockerfile:1
# dbops operator image. Build (from the repository root; no Docker engine is needed with buildah/podman):
#   docker build -t dbops:dev .          podman build -t dbops:dev .          buildah bud -t dbops:dev .
#
# Base: the official slim Python 3.11 image, pinned by exact tag. It is not pinned by digest because no
# container registry is reachable where this file was written, so no digest could be resolved and
# checked; the release workflow (.github/workflows/image.yml) records the digest it built from in the
# SBOM and the cosign signature, and Dependabot (docker ecosystem) proposes tag updates. To pin by
# digest: `crane digest python:3.11.15-slim-trixie` (or `docker buildx imagetools inspect`) and append
# `@sha256:<digest>` to both FROM lines (they must stay the same image: the venv is built against it).

# --- build: the virtualenv, from the hashed lock file only --------------------------------------
FROM python:3.11.15-slim-trixie AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# A venv without pip: the base image's pip installs into it (--python), so none ships in the image.
RUN python -m venv --without-pip /opt/dbops/venv
COPY requirements/runtime.lock requirements/runtime.lock
# --require-hashes: every distribution must match the lock's hash; --only-binary: nothing is compiled,
# so the build stage needs no compiler; --no-deps: the lock is complete (uv pip compile).
RUN python -m pip --python /opt/dbops/venv/bin/python install \
        --require-hashes --no-deps --only-binary=:all: -r requirements/runtime.lock
# The package itself is plain Python (operator/dbops): copied, not pip-installed, so that no unpinned
# build backend is fetched. Byte-compiled here, since the running container may not write .pyc files.
COPY operator/dbops /opt/dbops/app/dbops
RUN python -m compileall -q -j 0 /opt/dbops/app /opt/dbops/venv/lib

# --- runtime ----------------------------------------------------------------------------------------
FROM python:3.11.15-slim-trixie
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="dbops" \
      org.opencontainers.image.description="Kubernetes operator that restores AWS RDS databases from YAML" \
      org.opencontainers.image.source="https://github.com/dbops-dev/dbops" \
      org.opencontainers.image.url="https://github.com/dbops-dev/dbops" \
      org.opencontainers.image.documentation="https://github.com/dbops-dev/dbops#readme" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="dbops" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.15-slim-trixie"

# Only what the operator runs with: no pip, ensurepip, idle or pydoc (nothing is installed at run time),
# no setuid/setgid bits; the data directory, owned by the numeric non-root user the manifests run as.
RUN rm -rf /usr/local/lib/python3.11/site-packages/pip /usr/local/lib/python3.11/site-packages/pip-* \
        /usr/local/lib/python3.11/site-packages/setuptools* /usr/local/lib/python3.11/site-packages/wheel* \
        /usr/local/lib/python3.11/ensurepip /usr/local/lib/python3.11/idlelib \
        /usr/local/bin/pip* /usr/local/bin/idle* /usr/local/bin/pydoc* \
    && find / -xdev -type f -perm /6000 -exec chmod a-s {} + \
    && install -d -o 65532 -g 65532 -m 0750 /var/lib/dbops

COPY --from=build /opt/dbops /opt/dbops

# Read-only root filesystem: nothing is written outside /tmp (the webhook's self-signed certificate,
# when no certificate is mounted) and /var/lib/dbops (the SQLite audit trail and its spool), which the
# Deployment mounts as emptyDir volumes (manifests/base/deployment.yaml sets the same two variables).
# HOME=/tmp: botocore looks for ~/.aws; there is no home directory for the numeric user.
ENV PATH=/opt/dbops/venv/bin:$PATH \
    PYTHONPATH=/opt/dbops/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    DBOPS_LIVENESS_PORT=8080 \
    DBOPS_METRICS_PORT=9100 \
    DBOPS_AUDIT_URL=sqlite:////var/lib/dbops/audit.db \
    DBOPS_AUDIT_SPOOL=/var/lib/dbops/audit-spool
VOLUME ["/var/lib/dbops"]
WORKDIR /var/lib/dbops
USER 65532:65532
EXPOSE 8080 9100 9443

# Kubernetes ignores HEALTHCHECK and uses the Deployment's probes on the same kopf liveness endpoint
# (/healthz on DBOPS_LIVENESS_PORT); this one is for `docker run`/`podman run`, with Python itself
# rather than a curl the image does not ship.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DBOPS_LIVENESS_PORT', '8080'), timeout=4)"]

# `python -m dbops run` by default; the subcommand is CMD so that the manifests' `args: ["run"]` and
# `docker run IMAGE audit --since 1d` both work.
ENTRYPOINT ["python", "-m", "dbops"]
CMD ["run"]
