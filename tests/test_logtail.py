"""How a log group is read: each event once up to the settle time, and late deliveries by going
back over the overlap, only when the quota has a call to spare."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from exporter.aws.logtail import GroupTail, ReadWindow
from exporter.aws.source import LogRecord

WINDOW = ReadWindow(settle_ms=2_000, overlap_ms=10_000, lookback_ms=60_000)


@dataclass
class Group:
    """A log group's events as (timestamp ms, delivered ms), answered two to a page."""

    events: list[tuple[int, int]]
    now_ms: int = 0
    calls: list[tuple[int, int]] = field(default_factory=list)

    async def filter_log_events(
        self, group_arn: str, start_ms: int, end_ms: int, next_token: str | None = None
    ) -> tuple[list[LogRecord], str | None]:
        if next_token is None:
            self.calls.append((start_ms, end_ms))
        matching = [
            LogRecord(f"{stamp}-{index}", stamp, "s", "{}")
            for index, (stamp, delivered) in enumerate(self.events)
            if start_ms <= stamp <= end_ms and delivered <= self.now_ms
        ]
        offset = int(next_token or 0)
        page = matching[offset : offset + 2]
        return page, str(offset + 2) if offset + 2 < len(matching) else None


def read(tail: GroupTail, group: Group, now_ms: int, spare: bool = True) -> list[tuple[int, bool]]:
    """One read at `now_ms`: the timestamps handed over, each with whether it was found behind
    the read position (by going back over the overlap)."""
    group.now_ms = now_ms
    previous = tail.watermark_ms

    async def go() -> list[tuple[int, bool]]:
        out: list[tuple[int, bool]] = []
        async for records, _, late in tail.pages(group, now_ms, WINDOW, lambda: spare):
            found = [
                (record.timestamp_ms, previous is not None and record.timestamp_ms < previous)
                for record in records
            ]
            assert late == sum(1 for _, behind in found if behind)
            out.extend(found)
        return out

    return asyncio.run(go())


def test_the_main_read_takes_each_event_once_up_to_the_settle_time() -> None:
    group = Group([(100_000 + i * 500, 100_000 + i * 500 + 300) for i in range(40)])  # 100 s .. 119.5 s
    tail = GroupTail("arn:group")
    first = read(tail, group, 105_000, spare=False)
    assert [stamp for stamp, _ in first] == [100_000, 100_500, 101_000, 101_500, 102_000, 102_500, 103_000]
    assert tail.watermark_ms == 103_001 and tail.late_read is None  # nothing to go back over on the first one
    second = read(tail, group, 108_000, spare=False)
    assert [stamp for stamp, _ in second] == [103_500, 104_000, 104_500, 105_000, 105_500, 106_000]
    assert group.calls == [(45_000, 103_000), (103_001, 106_000)]  # back to back, nothing read twice
    assert tail.late_read is False


def test_with_no_lookback_the_first_read_starts_at_the_settle_point() -> None:
    group = Group([(102_500, 102_600), (104_000, 104_100)])
    tail = GroupTail("arn:group")
    window = ReadWindow(settle_ms=2_000, overlap_ms=0, lookback_ms=0)

    async def go(now_ms: int) -> list[int]:
        group.now_ms = now_ms
        return [
            r.timestamp_ms
            async for records, _, _ in tail.pages(group, now_ms, window, lambda: True)
            for r in records
        ]

    assert asyncio.run(go(104_000)) == []  # reads [102 s, 102 s]
    assert asyncio.run(go(107_000)) == [102_500, 104_000]


def test_going_back_over_the_overlap_finds_what_came_late_and_nothing_twice() -> None:
    # the event at 101 s is delivered 6 s late, after the read that covered it
    group = Group([(100_000, 100_100), (101_000, 107_000), (102_000, 102_100), (106_000, 106_100)])
    tail = GroupTail("arn:group")
    assert read(tail, group, 104_000) == [(100_000, False), (102_000, False)]
    assert read(tail, group, 108_000) == [(101_000, True), (106_000, False)]
    assert group.calls[1:] == [(92_001, 106_000)]  # one read, from the overlap before the position
    assert tail.late_read is True
    assert read(tail, group, 110_000) == []  # read again by the next read: known by id


def test_a_busy_group_reads_its_new_events_first_and_goes_back_afterwards() -> None:
    """A group whose last read took more than a page reads on from its position first (its
    calls go to new events), then goes back over the overlap page by page while a call is spare."""
    events = [(100_000 + i * 100, 100_000 + i * 100 + 50) for i in range(40)]  # 100 s .. 103.9 s
    events.append((101_050, 107_000))  # delivered 6 s late
    events += [(106_000 + i * 100, 106_000 + i * 100 + 50) for i in range(6)]
    group = Group(events)
    tail = GroupTail("arn:group")
    read(tail, group, 105_000)  # many pages: busy
    assert tail.last_pages > 1
    found = read(tail, group, 109_000)
    assert group.calls[1] == (103_001, 107_000) and group.calls[2] == (93_001, 103_000)
    assert [stamp for stamp, behind in found if not behind] == sorted(
        stamp for stamp, _ in events if 103_000 < stamp <= 107_000
    )
    assert [stamp for stamp, behind in found if behind] == [101_050]  # found going back, afterwards
    assert found.index((101_050, True)) > found.index((106_500, False))


def test_without_calls_to_spare_the_overlap_is_not_read_and_the_late_event_missed() -> None:
    group = Group([(100_000, 100_100), (101_000, 107_000), (102_000, 102_100)])
    tail = GroupTail("arn:group")
    read(tail, group, 104_000, spare=False)
    assert read(tail, group, 108_000, spare=False) == []
    assert tail.late_read is False and group.calls[1] == (102_001, 106_000)


def test_ids_are_kept_as_long_as_a_read_may_go_back_to_them() -> None:
    group = Group([(100_000 + i * 1_000, 100_000 + i * 1_000) for i in range(30)])
    tail = GroupTail("arn:group")
    for now in range(104_000, 134_000, 2_000):
        read(tail, group, now)
        assert tail.watermark_ms is not None
        assert min(tail.seen.values()) >= tail.watermark_ms - 2_000 - WINDOW.overlap_ms - 1_000
    assert len(tail.seen) <= 13  # the overlap and one read's worth, not everything read


def test_a_read_that_fails_half_way_keeps_its_watermark_and_its_ids() -> None:
    group = Group([(100_000 + i * 100, 100_000) for i in range(6)])
    tail = GroupTail("arn:group", watermark_ms=99_000)

    class Breaks(Group):
        async def filter_log_events(
            self, group_arn: str, start_ms: int, end_ms: int, next_token: str | None = None
        ) -> tuple[list[LogRecord], str | None]:
            if next_token == "4":
                raise RuntimeError("down")
            return await super().filter_log_events(group_arn, start_ms, end_ms, next_token)

    breaking = Breaks(group.events, now_ms=104_000)

    async def go() -> list[int]:
        out: list[int] = []
        try:
            async for records, _, _ in tail.pages(breaking, 104_000, WINDOW, lambda: False):
                out.extend(record.timestamp_ms for record in records)
        except RuntimeError:
            pass
        return out

    assert asyncio.run(go()) == [100_000, 100_100, 100_200, 100_300]
    assert tail.watermark_ms == 99_000  # the same place next time
    assert [stamp for stamp, _ in read(tail, group, 104_000, spare=False)] == [100_400, 100_500]
