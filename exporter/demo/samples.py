"""Sample workflows: the demo deploys them, the tests record their histories."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ROLE_ARN = "arn:aws:iam::123456789012:role/sfn-exporter-demo"


@dataclass(frozen=True)
class SampleWorkflow:
    name: str
    definition: dict[str, Any]
    input: dict[str, Any]
    expected_status: str

    @property
    def definition_json(self) -> str:
        return json.dumps(self.definition)


def _wait(seconds: int, next_state: str | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"Type": "Wait", "Seconds": seconds}
    state.update({"Next": next_state} if next_state else {"End": True})
    return state


SAMPLES: tuple[SampleWorkflow, ...] = (
    SampleWorkflow(
        "parallel-fanout",
        {
            "StartAt": "Prepare",
            "States": {
                "Prepare": {"Type": "Pass", "Next": "FanOut"},
                "FanOut": {
                    "Type": "Parallel",
                    "Branches": [
                        {
                            "StartAt": "Reserve",
                            "States": {"Reserve": {"Type": "Pass", "Next": "Hold"}, "Hold": _wait(1)},
                        },
                        {
                            "StartAt": "Notify",
                            "States": {
                                "Notify": {"Type": "Pass", "Next": "Log"},
                                "Log": {"Type": "Pass", "End": True},
                            },
                        },
                    ],
                    "Next": "Done",
                },
                "Done": {"Type": "Succeed"},
            },
        },
        {"order": 1},
        "SUCCEEDED",
    ),
    SampleWorkflow(
        "map-concurrency",
        {
            "StartAt": "Each",
            "States": {
                "Each": {
                    "Type": "Map",
                    "ItemsPath": "$.items",
                    "MaxConcurrency": 2,
                    "Iterator": {
                        "StartAt": "Shape",
                        "States": {"Shape": {"Type": "Pass", "Next": "Work"}, "Work": _wait(1)},
                    },
                    "End": True,
                }
            },
        },
        {"items": [1, 2, 3, 4]},
        "SUCCEEDED",
    ),
    SampleWorkflow(
        "retry-then-catch",
        {
            "StartAt": "Lookup",
            "States": {
                "Lookup": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::dynamodb:getItem",
                    "Parameters": {"TableName": "no-such-table", "Key": {"id": {"S": "1"}}},
                    "Retry": [
                        {
                            "ErrorEquals": ["States.ALL"],
                            "IntervalSeconds": 1,
                            "MaxAttempts": 2,
                            "BackoffRate": 1.0,
                        }
                    ],
                    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Recover"}],
                    "Next": "Done",
                },
                "Recover": {"Type": "Pass", "Next": "Done"},
                "Done": {"Type": "Succeed"},
            },
        },
        {},
        "SUCCEEDED",
    ),
    SampleWorkflow(
        "always-fails",
        {
            "StartAt": "Check",
            "States": {
                "Check": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.ok", "BooleanEquals": True, "Next": "Fine"}],
                    "Default": "Reject",
                },
                "Fine": {"Type": "Succeed"},
                "Reject": {
                    "Type": "Fail",
                    "Error": "OrderRejected",
                    "Cause": "the order did not pass the checks",
                },
            },
        },
        {"ok": False},
        "FAILED",
    ),
    SampleWorkflow(
        "times-out",
        {"StartAt": "Stall", "TimeoutSeconds": 1, "States": {"Stall": _wait(4)}},
        {},
        "TIMED_OUT",
    ),
    SampleWorkflow(
        "long-wait",
        {
            "StartAt": "Prepare",
            "States": {
                "Prepare": {"Type": "Pass", "Next": "Sleep"},
                "Sleep": _wait(3, "Finish"),
                "Finish": {"Type": "Pass", "End": True},
            },
        },
        {},
        "SUCCEEDED",
    ),
    SampleWorkflow(
        "nested-map-parallel",
        {
            "StartAt": "Outer",
            "States": {
                "Outer": {
                    "Type": "Map",
                    "ItemsPath": "$.groups",
                    "Iterator": {
                        "StartAt": "Split",
                        "States": {
                            "Split": {
                                "Type": "Parallel",
                                "Branches": [
                                    {
                                        "StartAt": "Inner",
                                        "States": {
                                            "Inner": {
                                                "Type": "Map",
                                                "ItemsPath": "$.members",
                                                "Iterator": {
                                                    "StartAt": "Leaf",
                                                    "States": {"Leaf": {"Type": "Pass", "End": True}},
                                                },
                                                "End": True,
                                            }
                                        },
                                    },
                                    {"StartAt": "Audit", "States": {"Audit": {"Type": "Pass", "End": True}}},
                                ],
                                "End": True,
                            }
                        },
                    },
                    "End": True,
                }
            },
        },
        {"groups": [{"members": [1, 2]}, {"members": [3]}]},
        "SUCCEEDED",
    ),
)

# The demo's EXPRESS workflows: they log every event to this log group, where the exporter reads
# them (EXPRESS executions have no history API). Kept apart from SAMPLES, whose recorded histories
# the tests hold.
LOG_GROUP = "/aws/vendedlogs/states/sfn-exporter-demo"
EXPRESS_SAMPLES: tuple[SampleWorkflow, ...] = (
    SampleWorkflow(
        "express-orders",
        {
            "StartAt": "Validate",
            "States": {
                "Validate": {"Type": "Pass", "Next": "Route"},
                "Route": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.amount", "NumericGreaterThan": 100, "Next": "Review"}],
                    "Default": "Accept",
                },
                "Review": {
                    "Type": "Fail",
                    "Error": "Order.TooLarge",
                    "Cause": "orders over 100 need a review",
                },
                "Accept": {
                    "Type": "Map",
                    "ItemsPath": "$.lines",
                    "Iterator": {"StartAt": "Reserve", "States": {"Reserve": {"Type": "Pass", "End": True}}},
                    "End": True,
                },
            },
        },
        {"amount": 42, "lines": [{"sku": "a"}, {"sku": "b"}]},
        "SUCCEEDED",
    ),
)
