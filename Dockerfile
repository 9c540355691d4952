# sfn-otel-exporter: `sfn-exporter run`, as a non-root user, checkpoint in a volume.
# Build: docker build -t sfn-otel-exporter .
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY exporter ./exporter
COPY docker/install.sh ./docker/install.sh
# Pinned by constraints.txt; every dependency installs from a wheel, so no compiler is needed.
RUN sh docker/install.sh /opt/sfn-exporter

FROM python:3.11.11-slim-bookworm
COPY --from=build /opt/sfn-exporter /opt/sfn-exporter
RUN mkdir -p /var/lib/sfn-exporter && chown 10001:10001 /var/lib/sfn-exporter
# The default checkpoint path (sfn-exporter.sqlite) is relative: it lands in the volume.
WORKDIR /var/lib/sfn-exporter
ENV PATH=/opt/sfn-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
VOLUME ["/var/lib/sfn-exporter"]
EXPOSE 9810
ENTRYPOINT ["sfn-exporter", "run"]
