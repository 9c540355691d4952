"""Step Functions execution histories as OpenTelemetry traces and Prometheus metrics."""

__version__ = "0.1.0"
