"""Reading an execution's history: only what is new since a cursor, newest page first."""

from __future__ import annotations

import logging
import math
from typing import Any

from exporter.aws.source import InvalidToken, Malformed, StepFunctionsApi

log = logging.getLogger(__name__)

MAX_PAGE = 1000
MIN_PAGE = 10
# How fast the most a poll found fades, a poll: a burst's size is half forgotten after about
# 140 polls, so that one slightly smaller than the last is still read in one call.
PEAK_DECAY = 0.005
_TOKEN_RETRIES = 3


def first_page_size(last_new: int, peak: float, page_size: int) -> int:
    """maxResults of a poll's first page: room for the most a recent poll found (`peak`, see
    `next_peak`), but not more than twice what the last poll found plus a few (a burst
    long past must not make every poll read a large page), within [1, page_size]. Each event
    read that is not new is bytes parsed for nothing. A page need not reach the cursor's own
    event: ids are consecutive, so a page whose oldest event is the cursor's next is complete.
    A poll that finds the page full of new events and short of that reads on with pages of 1,000
    (one more call)."""
    return max(1, min(page_size, 2 * last_new + MIN_PAGE, math.ceil(peak)))


def next_peak(peak: float, found: int) -> float:
    """The most a recent poll found, after a poll that found `found` new events."""
    return max(float(found), peak * (1 - PEAK_DECAY))


def _event_id(event: Any, arn: str, position: int, guess: int | None) -> int:
    event_id = event.get("id") if isinstance(event, dict) else None
    if isinstance(event_id, bool) or not isinstance(event_id, int) or event_id < 1:
        kind = event.get("type") if isinstance(event, dict) else type(event).__name__
        which = f"event {guess}" if guess else "the event"
        raise Malformed(
            "GetExecutionHistory", "InvalidEvent",
            f"{arn}: {which} (position {position} of the answer, {kind}) has no positive integer id",
        )  # fmt: skip
    return event_id


def _hole(arn: str, what: str) -> Malformed:
    return Malformed("GetExecutionHistory", "IncompleteHistory", f"{arn}: {what}")


async def read_new_events(
    api: StepFunctionsApi, arn: str, after: int, page_size: int, include_data: bool
) -> list[dict[str, Any]]:
    """Events with id > `after`, in id order. Pages newest first (`reverseOrder`) and stops at the
    first event already handled or at event `after + 1` (ids are consecutive), so a poll costs
    one call while at most `page_size` events are new. An expired token (InvalidToken) starts the read again.

    What comes back has no hole: ids fall by one from page to page, and a read whose last page
    ends before reaching event `after` (or event 1) raises Malformed instead of returning less."""
    for attempt in range(_TOKEN_RETRIES):
        collected: list[dict[str, Any]] = []
        token: str | None = None
        size = page_size if after else MAX_PAGE
        try:
            while True:
                page = await api.history_page(
                    arn, reverse=True, max_results=size, next_token=token, include_data=include_data
                )
                reached = False
                for position, event in enumerate(page.events):
                    expected = collected[-1]["id"] - 1 if collected else None
                    event_id = _event_id(event, arn, position, expected)
                    if expected is not None and event_id != expected:
                        raise _hole(arn, f"event {expected} is missing (event {event_id} came next)")
                    if event_id <= after:
                        reached = True
                        break
                    collected.append(event)
                    if event_id == after + 1:
                        reached = True
                        break
                if reached:
                    break
                if not page.next_token:
                    oldest = collected[-1]["id"] if collected else None
                    if oldest != 1 and (oldest is not None or after > 0):
                        raise _hole(
                            arn, f"the answer ended at event {oldest} without reaching event {max(after, 1)}"
                        )
                    break
                token, size = page.next_token, MAX_PAGE
        except InvalidToken:
            if attempt == _TOKEN_RETRIES - 1:
                raise
            log.info("history token expired; reading again", extra={"execution_arn": arn})
            continue
        collected.reverse()
        return collected
    raise AssertionError("unreachable")


async def read_whole_history(api: StepFunctionsApi, arn: str, include_data: bool) -> list[dict[str, Any]]:
    """Every event, oldest first, in pages of 1,000 (to rebuild an execution's state)."""
    for attempt in range(_TOKEN_RETRIES):
        events: list[dict[str, Any]] = []
        token: str | None = None
        try:
            while True:
                page = await api.history_page(
                    arn, reverse=False, max_results=MAX_PAGE, next_token=token, include_data=include_data
                )
                for position, event in enumerate(page.events):
                    if _event_id(event, arn, position, len(events) + 1) != len(events) + 1:
                        raise _hole(
                            arn, f"event {len(events) + 1} is missing (event {event['id']} came next)"
                        )
                    events.append(event)
                if not page.next_token:
                    return events
                token = page.next_token
        except InvalidToken:
            if attempt == _TOKEN_RETRIES - 1:
                raise
    raise AssertionError("unreachable")
