"""Calls before downloads: a worker's downloads hold back their next chunk while it answers a call.

A worker's threads share one interpreter lock. On a node, every download producing its next
chunk (reading, deciding and copying records) wants that lock, and each hand-off of it to a
``/ping`` or a small query can wait a switch interval (5 ms), several times a call: with ten
downloads in a worker a ``/ping`` took 100-300 ms. Downloads therefore produce their chunks
through ``GATE.producing()``:

- at most ``PAR_STREAM_PRODUCERS`` (1) of a worker's downloads produce a chunk at once (the
  others wait without wanting the lock; sending a chunk, most of a download's time, is not gated);
- none starts a chunk while a call is being answered (``CallsFirstMiddleware``: from its request
  to its response object, whose streamed body is a download's own business), for at most
  ``HOLD_S`` a chunk, so a flood of calls slows downloads but never stops them.

Only the order in which threads run changes: every answer's bytes are the same.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

HOLD_S = 0.05  # the longest a download's next chunk waits for calls to be answered


class StreamGate:
    """Who may produce a chunk now: ``producers`` at most, none while a call is answered."""

    def __init__(self, producers: int, hold_s: float = HOLD_S) -> None:
        self.producers, self.hold_s = producers, hold_s
        self._changed = threading.Condition()
        self._calls = 0  # calls being answered
        self._producing = 0  # chunks being produced

    @contextmanager
    def call(self) -> Iterator[None]:
        """A call being answered: no download starts a chunk meanwhile (up to ``hold_s``)."""
        with self._changed:
            self._calls += 1
        try:
            yield
        finally:
            with self._changed:
                self._calls -= 1
                if not self._calls:
                    self._changed.notify_all()

    @contextmanager
    def producing(self) -> Iterator[None]:
        """One chunk of a download: waits for a free place and for the calls being answered."""
        deadline = time.monotonic() + self.hold_s
        with self._changed:
            while True:
                left = deadline - time.monotonic()
                if self._producing < self.producers and (not self._calls or left <= 0):
                    break
                # a woken waiter that may not go yet waits again: the timeout bounds a missed turn
                self._changed.wait(left if left > 0 else self.hold_s)
            self._producing += 1
        try:
            yield
        finally:
            with self._changed:
                self._producing -= 1
                self._changed.notify()

    def chunks(self, source: Iterator[bytes]) -> Iterator[bytes]:
        """``source``'s chunks, each produced through ``producing()``; sending them is not gated.

        Closing this closes ``source`` (a client gone frees the files or the node's connection).
        """
        try:
            while True:
                with self.producing():
                    chunk = next(source, None)
                if chunk is None:
                    return
                yield chunk
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()


# One per worker process: its threads share one lock. Only a node's downloads go through it: a
# collector's relay what nodes send, mostly waiting on a socket (gating them measured no better).
GATE = StreamGate(settings.PAR_STREAM_PRODUCERS)


class CallsFirstMiddleware:
    """Marks each request as a call being answered until its view returns (``StreamGate.call``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        with GATE.call():
            return self.get_response(request)
