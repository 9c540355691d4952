"""When to poll what: the poll scheduler within the API budget, and Wait states and past
durations that say when nothing can happen."""
