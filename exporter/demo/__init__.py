"""`sfn-exporter demo`: the exporter against an embedded Step Functions emulator with sample
workflows."""
