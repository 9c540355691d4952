"""A Step Functions of the project's own, for load, fault and freshness tests and benchmarks:
the service and its CloudWatch Logs over HTTP (AWS JSON protocol) or in-process, executions that
replay templates as a clock passes, AWS's quotas as token buckets, faults on demand."""
