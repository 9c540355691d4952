# sfn-otel-exporter: `sfn-exporter run`, as a non-root user, checkpoint in a volume.
# Build: docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) -t sfn-otel-exporter .
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml requirements.lock README.md LICENSE NOTICE ./
COPY exporter ./exporter
COPY docker/install.sh ./docker/install.sh
# Runtime dependencies pinned with hashes by requirements.lock; every one installs from a wheel,
# so no compiler is needed.
RUN sh docker/install.sh /opt/sfn-exporter

FROM python:3.11.11-slim-bookworm
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="sfn-otel-exporter" \
      org.opencontainers.image.description="Streams AWS Step Functions executions as OpenTelemetry traces and Prometheus metrics" \
      org.opencontainers.image.source="https://github.com/sfn-otel-exporter/sfn-otel-exporter" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# No package installer in the image that runs: the exporter's environment has none, and the
# base image's goes.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
    && mkdir -p /var/lib/sfn-exporter && chown 10001:10001 /var/lib/sfn-exporter
COPY --from=build /opt/sfn-exporter /opt/sfn-exporter
# The default checkpoint path (sfn-exporter.sqlite) is relative: it lands in the volume.
WORKDIR /var/lib/sfn-exporter
ENV PATH=/opt/sfn-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SFN_EXPORTER_REVISION=${REVISION}
USER 10001:10001
VOLUME ["/var/lib/sfn-exporter"]
EXPOSE 9810
ENTRYPOINT ["sfn-exporter", "run"]
