"""Stage three: what the assembler made goes out: spans over OTLP, metrics on /metrics, the
exporter's own health metrics and its web endpoints."""
