"""What makes a span tree well formed."""

from __future__ import annotations

from exporter.model import SpanKind, SpanRecord


def assert_well_formed(spans: list[SpanRecord], check_times: bool = True) -> None:
    """One root; unique ids; every parent in the trace; no span ending before it starts;
    children within their parent's time span (a redrive span lies after the root it reopens)."""
    assert spans, "no spans"
    by_id = {span.span_id: span for span in spans}
    assert len(by_id) == len(spans), "duplicate span ids"
    assert len({span.trace_id for span in spans}) == 1, "spans of more than one trace"
    roots = [s for s in spans if s.kind == SpanKind.EXECUTION and s.opening_event_id == 1]
    assert len(roots) == 1, f"expected one root, got {len(roots)}"
    for span in spans:
        if span is roots[0]:
            continue
        assert span.parent_span_id in by_id, f"{span.name}: parent {span.parent_span_id} not in trace"
        if span.end_ns is not None:
            assert span.end_ns >= span.start_ns, f"{span.name} ends before it starts"
        if not check_times or span.kind == SpanKind.EXECUTION:
            continue
        parent = by_id[span.parent_span_id]
        assert span.start_ns >= parent.start_ns, f"{span.name} starts before its parent {parent.name}"
        if parent.end_ns is not None:
            assert span.end_ns is not None, f"{span.name} open under closed {parent.name}"
            assert span.end_ns <= parent.end_ns, f"{span.name} ends after its parent {parent.name}"
