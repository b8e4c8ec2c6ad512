# syntax=docker/dockerfile:1
#
# One image for every dgxsim component; the entrypoint is `dgxsim`:
#   node DaemonSet:  dgxsim node run ...
#   operator:        dgxsim operator ...
#   job containers:  dgxsim workload
# Build: make image (docker build -t dgxsim:dev .)

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: install dgxsim and its dependencies into a virtual environment
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/dgxsim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY simnode ./simnode
COPY plugin ./plugin
COPY operator ./operator
# Every dependency ships binary wheels for linux/amd64 and arm64: no compiler needed.
RUN /opt/dgxsim/bin/pip install --only-binary=:all: --no-binary=dgxsim . \
    && /opt/dgxsim/bin/python -m compileall -q /opt/dgxsim/lib \
    && /opt/dgxsim/bin/pip uninstall --yes pip

# ---- final: the runtime only, as an unprivileged user
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="dgxsim" \
      org.opencontainers.image.description="Emulated NVIDIA DGX A100 nodes for Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/dgxsim/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib
RUN groupadd --system --gid 10001 dgxsim \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin dgxsim
COPY --from=build /opt/dgxsim /opt/dgxsim
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["dgxsim"]
CMD ["--help"]
