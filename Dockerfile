# mqttbridge container image. Build and run: docs/deploy.md ("Docker").
#
#   docker build -t mqttbridge .
#   docker run -d --name mqttbridge -v mqttbridge-state:/data \
#       -v "$PWD/config.yaml:/config/config.yaml:ro" --env-file mqttbridge.env mqttbridge
#
# Needs BuildKit (the default builder since Docker 23) for the RUN --mount in the final stage.
# No secret is baked in: credentials come at run time, through the environment (${VAR} in the config)
# or files mounted under /config or /run/secrets (<key>_file in the config).

# Python 3.13 (the minor version pinned; patch releases arrive with a rebuild) on Debian 13 "trixie".
# The Hyundai/Kia library's releases from 4.24 on need Python >= 3.12; on 3.11 pip falls back to 4.23.0,
# which predates the vendors' login change of August 2026. tests/test_versions.py checks this line, and
# .ci/run's second job tests the same minor version of Python.
ARG PYTHON_IMAGE=python:3.13-slim-trixie
# optional extras of pyproject.toml to install, comma-separated: --build-arg EXTRAS=hyundai,metrics
ARG EXTRAS=hyundai,metrics

# --- builder: every wheel the image needs, compiled here so the final stage needs no compiler --------
FROM ${PYTHON_IMAGE} AS builder
ARG EXTRAS

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

# An image with the Hyundai/Kia extra is refused on a Python older than 3.12 (--build-arg PYTHON_IMAGE=…):
# pip would install hyundai-kia-connect-api 4.23.0 there, too old for the vendors' login.
RUN python -c 'import os, sys; extras = {e.strip() for e in os.environ["EXTRAS"].split(",")}; \
sys.exit("the hyundai extra needs Python >= 3.12, this image has %d.%d: use PYTHON_IMAGE=python:3.13-slim-trixie" \
% sys.version_info[:2] if "hyundai" in extras and sys.version_info < (3, 12) else 0)'

# PyPI has binary wheels of every dependency for amd64 and arm64; elsewhere (32-bit Raspberry Pi OS,
# armhf) some are built from source, which needs a C compiler in this stage only.
RUN case "$(dpkg --print-architecture)" in \
        amd64|arm64) ;; \
        *) apt-get update \
           && apt-get install -y --no-install-recommends gcc libc6-dev \
           && rm -rf /var/lib/apt/lists/* ;; \
    esac

WORKDIR /src

# The dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change,
# not on every edit of the code.
COPY pyproject.toml ./
RUN python -c 'import os, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print(*p["dependencies"], *(r for e in filter(None, os.environ["EXTRAS"].split(",")) for r in p["optional-dependencies"][e.strip()]), sep=chr(10))' \
        > /tmp/requirements.txt \
    && pip wheel --wheel-dir /wheels --prefer-binary -r /tmp/requirements.txt

# Then the project itself, without its dependencies (they are above).
COPY README.md ./
COPY mqttbridge ./mqttbridge
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- final: the wheels installed, nothing else --------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG EXTRAS

LABEL org.opencontainers.image.title="mqttbridge" \
      org.opencontainers.image.description="Cars (legacy BMW ConnectedDrive, Hyundai/Kia) to MQTT with Home Assistant discovery" \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    STATE_DIRECTORY=/data

# The wheels are bind-mounted from the builder, so they never become a layer of this image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "mqttbridge[${EXTRAS}]" \
    && mqttbridge --version \
    && python --version \
    && { pip show hyundai-kia-connect-api 2>/dev/null | grep -E '^(Name|Version):' || true; }

# A fixed uid, so a bind-mounted state folder can be given to it: chown 10001:10001 ./state
RUN groupadd --system --gid 10001 mqttbridge \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
               --shell /usr/sbin/nologin mqttbridge \
    && mkdir -p /data /config \
    && chown 10001:10001 /data \
    && chmod 0700 /data

# Tokens, call budgets and the heartbeat; a new named volume takes this folder's owner and mode.
VOLUME /data
USER 10001:10001
WORKDIR /data

# Healthy while the daemon's heartbeat is fresh and its broker session is up. The first minute is
# for connecting; `mqttbridge demo` and `run` write the heartbeat to $STATE_DIRECTORY (/data).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD mqttbridge health --state-dir /data || exit 1

# mqttbridge runs as PID 1 and stops cleanly on SIGTERM (`docker stop`): "offline" is published.
ENTRYPOINT ["mqttbridge"]
CMD ["run", "-c", "/config/config.yaml"]
