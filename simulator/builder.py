"""A compact way to write execution histories in tests, shaped exactly like AWS's events."""

from __future__ import annotations

from typing import Any

BASE_TIME_S = 1_700_000_000.0


def details_key(event_type: str) -> str:
    if event_type.endswith("StateEntered"):
        return "stateEnteredEventDetails"
    if event_type.endswith("StateExited"):
        return "stateExitedEventDetails"
    return event_type[0].lower() + event_type[1:] + "EventDetails"


class History:
    """Appends events with ids 1, 2, 3, ...; each points at the previous one unless told."""

    def __init__(self, step_s: float = 1.0) -> None:
        self.events: list[dict[str, Any]] = []
        self.step_s = step_s

    def add(self, event_type: str, prev: int | None = None, at: float | None = None, **details: Any) -> int:
        event_id = len(self.events) + 1
        event: dict[str, Any] = {
            "id": event_id,
            "previousEventId": event_id - 1 if prev is None else prev,
            "timestamp": BASE_TIME_S + (at if at is not None else (event_id - 1) * self.step_s),
            "type": event_type,
        }
        if details:
            event[details_key(event_type)] = details
        self.events.append(event)
        return event_id

    def start(self) -> int:
        return self.add("ExecutionStarted", prev=0, input="{}", roleArn="arn:aws:iam::1:role/r")

    def state(self, state_type: str, name: str, prev: int | None = None) -> tuple[int, int]:
        """A state entered and exited at once; returns both ids."""
        entered = self.add(f"{state_type}StateEntered", prev=prev, name=name, input="{}")
        return entered, self.add(f"{state_type}StateExited", name=name, output="{}")
