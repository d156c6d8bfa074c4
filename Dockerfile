# syntax=docker/dockerfile:1
# The one FleetDNS image: every console script of pyproject.toml (fleetdns-aggregator, fleetdns-webhook,
# fleetdns-zonefiles, fleetdns-corefile, fleetdns-prober, and the operator's fleetdns) on PATH; the chart runs each by
# name.
#   docker build -t fleetdns:0.1.0 .
# Base pinned to an exact tag (pin its digest too in your registry mirror: FROM python:...@sha256:...).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fleetdns/ fleetdns/
COPY aggregator/ aggregator/
COPY webhook_provider/ webhook_provider/
COPY serving/ serving/
COPY prober/ prober/
COPY cli/ cli/
# A virtualenv, so the runtime stage copies one directory; only the runtime dependencies (no [test]).
RUN python -m venv /opt/fleetdns \
 && /opt/fleetdns/bin/pip install --upgrade pip \
 && /opt/fleetdns/bin/pip install . \
 && for script in fleetdns-aggregator fleetdns-webhook fleetdns-zonefiles fleetdns-corefile fleetdns-prober fleetdns kubectl-fleetdns; do \
      /opt/fleetdns/bin/$script --help >/dev/null || exit 1; \
    done

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="fleetdns" \
      org.opencontainers.image.description="FleetDNS: aggregator, webhook provider, zone-file sidecar, Corefile renderer, prober" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 65532 fleetdns \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin fleetdns
COPY --from=build /opt/fleetdns /opt/fleetdns
ENV PATH=/opt/fleetdns/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric, so runAsNonRoot can verify it; the chart also sets a read-only root filesystem.
USER 65532:65532
# No ENTRYPOINT: the chart names the console script of each container (command: [fleetdns-...]).
CMD ["fleetdns-aggregator", "--help"]
