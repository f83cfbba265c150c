"""Calls before downloads: the gate a node's downloads produce their chunks through."""

from __future__ import annotations

import threading

from api.streamgate import GATE, CallsFirstMiddleware, StreamGate

WAIT_S = 10  # the longest a test waits for something that must happen


def _producer(gate: StreamGate, entered: threading.Event, leave: threading.Event) -> threading.Thread:
    def run() -> None:
        with gate.producing():
            entered.set()
            leave.wait(WAIT_S)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_no_more_chunks_are_produced_at_once_than_the_gate_allows() -> None:
    gate = StreamGate(producers=2, hold_s=WAIT_S)
    entered = [threading.Event() for _ in range(3)]
    leave = threading.Event()
    threads = [_producer(gate, entered[0], leave), _producer(gate, entered[1], leave)]
    assert entered[0].wait(WAIT_S) and entered[1].wait(WAIT_S)
    threads.append(_producer(gate, entered[2], leave))
    assert not entered[2].wait(0.3)  # both places are taken
    leave.set()
    assert entered[2].wait(WAIT_S)
    for thread in threads:
        thread.join(WAIT_S)


def test_a_chunk_waits_while_a_call_is_answered_and_starts_when_it_ends() -> None:
    gate = StreamGate(producers=4, hold_s=WAIT_S)
    entered, leave = threading.Event(), threading.Event()
    with gate.call():
        thread = _producer(gate, entered, leave)
        assert not entered.wait(0.3)
    assert entered.wait(WAIT_S)
    leave.set()
    thread.join(WAIT_S)


def test_a_chunk_waits_for_calls_no_longer_than_the_hold() -> None:
    gate = StreamGate(producers=1, hold_s=0.05)
    entered, leave = threading.Event(), threading.Event()
    with gate.call():  # a call that never ends while the download waits
        thread = _producer(gate, entered, leave)
        assert entered.wait(WAIT_S)
    leave.set()
    thread.join(WAIT_S)


def test_the_gated_chunks_are_the_source_chunks_in_order() -> None:
    gate = StreamGate(producers=1, hold_s=WAIT_S)
    chunks = [b"pcap header", b"x" * 70_000, b"", b"last"]  # an empty chunk is not the end
    assert list(gate.chunks(iter(chunks))) == chunks


def test_a_request_counts_as_a_call_until_its_view_returns() -> None:
    seen = []
    middleware = CallsFirstMiddleware(lambda request: seen.append(GATE._calls) or "response")
    before = GATE._calls
    assert middleware(object()) == "response"
    assert seen == [before + 1] and GATE._calls == before


def test_closing_the_gated_chunks_closes_their_source() -> None:
    closed = []

    def source():
        try:
            yield b"first"
            yield b"second"
        finally:
            closed.append(True)

    gated = StreamGate(producers=1, hold_s=WAIT_S).chunks(source())
    assert next(gated) == b"first"
    gated.close()
    assert closed == [True]
