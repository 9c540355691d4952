"""Stage one, the edge to AWS: which state machines and executions there are, their new history
events and log messages, paced within the API quotas. Only `source` talks to AWS."""
