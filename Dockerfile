# meshward: the CA, the PDP and the node agent in one slim image.
#
#   docker build -t meshward:dev .
#   docker run --rm -p 8181:8181 -p 9191:9191 meshward:dev \
#       pdp serve --grpc-addr 0.0.0.0:9191 --http-addr 0.0.0.0:8181
#
# Stage 1 builds wheels (compilers live only here); stage 2 installs them into
# a virtualenv; the final image holds Python, the venv, the example policies,
# and no compiler, no pip cache, no build tool. It runs as uid 10001.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY meshward ./meshward
COPY authz ./authz
COPY ca ./ca
COPY agent ./agent
COPY console ./console
RUN python -m venv /opt/meshward \
 && /opt/meshward/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/meshward/bin/pip install --no-cache-dir '.[otel]' \
 && /opt/meshward/bin/pip uninstall -y pip setuptools

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
# git: the PDP clones policy repositories with the git command line.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 meshward \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/meshward --create-home \
        --shell /usr/sbin/nologin meshward
COPY --from=build /opt/meshward /opt/meshward
COPY policies /usr/share/meshward/policies
ENV PATH=/opt/meshward/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MESHWARD_STATE_DIR=/var/lib/meshward \
    MESHWARD_PDP__POLICIES=/usr/share/meshward/policies
USER 10001:10001
WORKDIR /var/lib/meshward
EXPOSE 8181 9191 8443
ENTRYPOINT ["/usr/bin/tini", "--", "meshward"]
CMD ["--help"]
