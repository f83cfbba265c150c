"""One attempt of an export: the nodes' answers merged (or one passed through) into a file.

The same fan-out and merge as a streamed ``/data.pcap`` (collector.fanout), written to a
temporary dot-name in PAR_EXPORT_DIR (mode 0600). Every byte is read back through the engine's
stream reader as it is written, so the file is known to end on a record boundary; once the stream
ended cleanly the file's size is checked, it is fsynced and renamed, and only then is the job
marked done. A thread writes the progress once a second, which is also the worker's heartbeat; when
that write finds the job no longer this attempt's (cancelled, or given up on), the attempt stops:
its node connections are shut down, its temporary file removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from collector.fanout import LIMIT_SLACK, ask_nodes, every_node_failed, node_label
from collector.jobs.model import Export
from collector.jobs.recordwalk import RecordWalk
from collector.models import ApiKey, Node, NodeGrants, UserGrant
from collector.proxy import NodeAnswer, NodeUnreachable
from engine.durable import atomic_write, make_dirs
from engine.formats.stream import StreamReader
from engine.merge.merger import Merger, SourceFailed
from engine.query.answer import Limits

log = logging.getLogger("collector.jobs")

REPORT_EVERY = 1.0  # seconds between two progress writes (the worker's heartbeat)
# Set when the worker is told to stop (SIGTERM): the running attempt ends now and is queued again.
SHUTDOWN = threading.Event()
WRITE_AHEAD = 8  # chunks (of up to 1 MiB) read from the nodes and not yet written
SYNC_EVERY = 64 << 20  # bytes written between two fdatasyncs of the file


class Stopped(Exception):
    """The job was cancelled, or given to another attempt, while this one ran."""


class AttemptFailed(Exception):
    """This attempt cannot finish (a node failed, the disk is full); another may."""


class Refused(Exception):
    """No attempt can finish: the holder may no longer query a node asked, or a node is gone."""


def holder_grant(export: Export) -> NodeGrants | None:
    """The grant the job runs under, as it is now: a revoked or expired key has none."""
    kind, _, pk = export.holder.partition(":")
    if kind == "key":
        key = ApiKey.objects.filter(pk=pk, active=True).first()
        if key is None or (key.expires is not None and key.expires <= timezone.now()):
            return None
        return key
    return UserGrant.objects.filter(user_id=pk, user__is_active=True).first()


def nodes_of(export: Export) -> list[Node]:
    """The nodes asked, still granted and active; Refused naming the first that is not."""
    ids = export.request["nodes"]
    grant = holder_grant(export)
    if grant is None:
        raise Refused("the API key or user that asked is no longer valid")
    if not grant.may_query_all(ids):
        raise Refused("the API key or user that asked may no longer query every node asked")
    nodes = list(Node.objects.filter(pk__in=ids, active=True).order_by("id"))
    missing = sorted(set(ids) - {node.id for node in nodes})
    if missing:
        raise Refused(f"no such node: {', '.join(map(str, missing))}")
    return nodes


def file_name(export: Export, pcapng: bool) -> str:
    return f"export-{export.pk}.{'pcapng' if pcapng else 'pcap'}"


class Attempt:
    """The running attempt's counters, shared with its progress thread."""

    def __init__(self, export: Export) -> None:
        self.export = export
        self.answers: list[NodeAnswer] = []
        self.outcomes: dict[str, str] = {}
        self.done: set[int] = set()
        self.packets = 0
        self.written = 0
        self.estimate = export.estimate
        self.stop = threading.Event()
        self.finished = threading.Event()

    # ------------------------------------------------------------ progress

    def progress(self) -> dict:
        received = sum(a.received for a in self.answers)
        share = min(0.99, received / self.estimate) if self.estimate else 0.0
        nodes = dict(self.outcomes)
        for answer in self.answers:
            key = str(answer.node.id)
            if key not in nodes:
                state = "done" if answer.node.id in self.done else "running"
                nodes[key] = f"{state}, {answer.received} bytes"
        return {"packets": self.packets, "bytes": self.written, "progress": share, "nodes": nodes}

    def report_loop(self) -> None:
        """Once a second: progress and heartbeat; stops the attempt when the job is no longer its."""
        try:
            while not self.finished.wait(REPORT_EVERY):
                if SHUTDOWN.is_set():
                    self.interrupt()
                if not self.export.report(**self.progress()):
                    self.stop.set()
                    self.interrupt()
                    return
        except Exception:
            log.exception("export %s: could not write its progress", self.export.pk)
        finally:
            connection.close()  # this thread's own connection

    def interrupt(self) -> None:
        """Wake a read blocked on a node: shut its socket down (closing it from here would not)."""
        for answer in self.answers:
            sock = getattr(getattr(answer.response.raw, "_connection", None), "sock", None)
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------ the stream

    def counted(self, answer: NodeAnswer) -> Iterator[bytes]:
        yield from answer.chunks()
        self.done.add(answer.node.id)

    def open(self, nodes: list[Node]) -> tuple[Iterator[bytes], bool]:
        """The answer's bytes, and whether it is pcapng; AttemptFailed when no node answers."""
        request = self.export.request
        params = dict(request["params"])
        merge = len(nodes) > 1 or request["pcapng"]
        wanted = int(params["limit_bytes"]) if "limit_bytes" in params else None
        # The nodes' own PAR_MAX_ANSWER_BYTES would refuse a large export: bounded by the export's.
        params["limit_bytes"] = str((wanted or settings.PAR_EXPORT_MAX_BYTES) + (LIMIT_SLACK if merge else 0))
        if merge:
            params.pop("format", None)
        answers, failures = ask_nodes(nodes, "data.pcap", params)
        for node, failure in failures:
            self.outcomes[str(node.id)] = str(failure.reason)
        if not answers:
            raise AttemptFailed(str(every_node_failed(failures).detail))
        self.answers = answers
        if self.estimate is None:
            values = [a.headers.get("X-PAR-Estimate-Bytes", "") for a in answers]
            self.estimate = sum(int(v) for v in values) if all(v.isdigit() for v in values) else None
        if not merge:
            return self.counted(answers[0]), False
        readers = []
        for answer in answers:
            reader = StreamReader(self.counted(answer), name=f"node {answer.node.id}")
            try:
                reader.read_header()
            except Exception as exc:
                raise AttemptFailed(
                    f"node {answer.node.id}: no capture header ({type(exc).__name__})"
                ) from None
            readers.append(reader)
        limits = Limits(
            int(request["params"]["limit_packets"]) if "limit_packets" in request["params"] else None, wanted
        )
        merger = Merger(
            readers, [node_label(a.node) for a in answers], pcapng=request["pcapng"], limits=limits
        )
        return self.merged(merger), merger.pcapng

    def merged(self, merger: Merger) -> Iterator[bytes]:
        try:
            yield from merger.stream()
        except SourceFailed as exc:
            answer = self.answers[exc.index]
            self.outcomes[str(answer.node.id)] = f"failed mid-stream after {answer.received} bytes"
            raise AttemptFailed(
                f"node {answer.node.id} failed mid-stream: {type(exc.cause).__name__}"
            ) from None

    def write(self, chunks: Iterator[bytes], out, digest) -> None:
        """Every chunk to ``out`` and the digest, its records counted; AttemptFailed unless it ends whole.

        A thread of its own writes, hashes and walks each chunk (and syncs the file every
        SYNC_EVERY bytes, so the last fsync is short) while this one reads the next from the nodes.
        """
        walk = RecordWalk()
        maximum = settings.PAR_EXPORT_MAX_BYTES
        pending: queue.Queue[bytes | None] = queue.Queue(maxsize=WRITE_AHEAD)
        failed: list[BaseException] = []

        def drain() -> None:
            synced = 0
            while (chunk := pending.get()) is not None:
                if failed:
                    continue  # the producer sees it and stops; take what it still sends
                try:
                    out.write(chunk)
                    digest.update(chunk)
                    walk.feed(chunk)
                    self.packets = walk.packets
                    if out.tell() - synced >= SYNC_EVERY:
                        out.flush()
                        os.fdatasync(out.fileno())
                        synced = out.tell()
                except BaseException as exc:
                    failed.append(exc)

        writer = threading.Thread(target=drain, name=f"export-{self.export.pk}-write", daemon=True)
        writer.start()
        try:
            for chunk in chunks:
                if self.stop.is_set():
                    raise Stopped()
                if SHUTDOWN.is_set():
                    raise AttemptFailed("its worker was stopped")
                if failed:
                    break
                pending.put(chunk)
                self.written += len(chunk)
                if self.written > maximum:
                    raise AttemptFailed(f"the answer grew past PAR_EXPORT_MAX_BYTES ({maximum})")
        finally:
            pending.put(None)
            writer.join()
        if failed:
            raise failed[0]
        if not walk.whole():
            raise AttemptFailed(f"the answer ended inside a record, after {self.written} bytes")

    def close(self) -> None:
        self.finished.set()
        for answer in self.answers:
            answer.close()


def run(export_id: int, requeue: Callable[[int], None]) -> str:
    """Run the next attempt of export ``export_id``; its resulting state (or "skipped")."""
    export = Export.claim(export_id)
    if export is None:
        return "skipped"  # cancelled while queued, or another worker runs it
    log.info("export %s: attempt %s started", export.pk, export.attempts)
    try:
        outcome = _attempt(export)
    except Refused as exc:
        export.fail(str(exc))
        outcome = "failed"
    except Stopped:
        outcome = "stopped"
    except Exception as exc:
        reason = (
            str(exc) if isinstance(exc, (AttemptFailed, NodeUnreachable)) else f"{type(exc).__name__}: {exc}"
        )
        if not isinstance(exc, AttemptFailed):
            log.exception("export %s: attempt %s failed", export.pk, export.attempts)
        outcome = "queued" if export.attempt_failed(reason) else "failed"
        if outcome == "queued":
            requeue(export.pk)
    log.info("export %s: attempt %s %s", export.pk, export.attempts, outcome)
    if not connection.in_atomic_block:  # a caller's transaction (a test's) keeps its connection
        close_old_connections()
    return outcome


def _attempt(export: Export) -> str:
    nodes = nodes_of(export)
    attempt = Attempt(export)
    reporter = threading.Thread(target=attempt.report_loop, name=f"export-{export.pk}", daemon=True)
    reporter.start()
    directory = Path(settings.PAR_EXPORT_DIR)
    make_dirs(directory)
    digest = hashlib.sha256()
    try:
        chunks, pcapng = attempt.open(nodes)
        name = file_name(export, pcapng)
        temp = directory / f".{name}.{export.attempts}.tmp"
        try:
            with atomic_write(directory / name, mode=0o600, temp=temp) as out:
                attempt.write(chunks, out, digest)
                out.flush()
                size = os.fstat(out.fileno()).st_size
                if size != attempt.written:
                    raise AttemptFailed(f"the file holds {size} bytes of {attempt.written} written")
        except Exception:
            if attempt.stop.is_set():
                raise Stopped() from None
            raise
    finally:
        attempt.close()
        reporter.join()
    done = export.succeed(
        packets=attempt.packets,
        bytes=attempt.written,
        sha256=digest.hexdigest(),
        file_name=name,
        content_type="application/x-pcapng" if pcapng else "application/vnd.tcpdump.pcap",
        nodes={**attempt.progress()["nodes"], **{str(a.node.id): "done" for a in attempt.answers}},
    )
    if not done:  # cancelled (or given up on) as it finished: its file is not served
        if not Export.objects.filter(pk=export.pk, state="done", file_name=name).exists():
            (directory / name).unlink(missing_ok=True)
        raise Stopped()
    return "done"
