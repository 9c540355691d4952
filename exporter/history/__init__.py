"""Stage two, pure: history events (read from `GetExecutionHistory` or made from log messages)
become span records and metric observations. No I/O, no clock."""
