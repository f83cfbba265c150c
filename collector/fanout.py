"""Asking one node or several at once: in parallel, every failure named, several pcaps merged by time.

A node that fails before its first byte is left out of the answer and named in
``X-PAR-Nodes-Failed``; when every node failed, the answer is that failure (one node) or a
502/504 naming each. A node failing mid-stream cuts the whole answer (collector.proxy.Download).

Limits hold for the answer as a whole (docs/SPEC.md "Selecting packets"): the nodes' heads, which arrive
before their bodies, carry their estimates, and their sum over PAR_MAX_ANSWER_BYTES without
``limit_bytes`` is a 413 before any byte is sent (a node's own 413 is the whole answer's too);
``limit_packets``/``limit_bytes`` end a merged answer at a record boundary in time order
(``engine.merge.merger.Merger``), each node asked for no more than the merge can use.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.http import StreamingHttpResponse
from rest_framework import exceptions

from api.errors import too_large_message
from api.flowparams import MIN_LIMIT_BYTES, AnswerOptions, parse_answer_options
from collector.metrics import proxy_failed
from collector.models import Node
from collector.proxy import (
    ESTIMATE_HEADERS,
    NODE_PROBLEM,
    PAR_HEADERS,
    PASSED_HEADERS,
    UNINDEXED,
    Download,
    NodeAnswer,
    NodeFailedMidStream,
    NodeSaid,
    NodeTimeout,
    NodeUnreachable,
    is_timeout,
    node_header,
    open_pcap,
    passthrough,
)
from collector.requestlog import RequestLog
from engine.formats.stream import StreamReader
from engine.merge.merger import Merger, SourceFailed
from engine.query.answer import Limits

log = logging.getLogger("collector.fanout")

NodeFailure = NodeUnreachable | NodeTimeout | NodeSaid
PCAP_TYPE = "application/vnd.tcpdump.pcap"
PCAPNG_TYPE = "application/x-pcapng"
_FILENAME = re.compile(r'filename="([^"]+)"')
_UNSAFE = re.compile(r"[^ -~]|,")  # a reason travels in a header, in a comma-separated list
# A node's answer to merge may use this much more than limit_bytes: its own header can be smaller
# than the merged one by less than this, and its records are never larger than the merge writes them.
LIMIT_SLACK = 1 << 16
MAX_COUNT = 2**63 - 1  # the largest limit a node reads


class AnswerTooLarge(exceptions.APIException):
    status_code = 413
    default_code = "answer_too_large"


def node_label(node: Node) -> str:
    """How a node's packets are named in a pcapng answer."""
    return f"node {node.id} {node.name}".rstrip()


def _opened(node: Node, path: str, params: Mapping[str, str], method: str, merge: bool):
    """Node ``node``'s answer opened (and, to merge, its capture header read), or its failure."""
    try:
        answer = open_pcap(node, path, params, method)
    except (NodeUnreachable, NodeTimeout, NodeSaid) as failure:
        return failure
    if not merge or method == "HEAD":
        return answer
    answer.reader = StreamReader(answer.chunks(), name=f"node {node.id}")
    try:
        answer.reader.read_header()
    except Exception as exc:  # a transport error, or bytes that are no capture
        answer.close()
        log.warning("node %s: no capture header: %s", node.id, exc)
        proxy_failed(node.id, "timeout" if is_timeout(exc) else "error")
        if is_timeout(exc):
            return NodeTimeout()
        return NodeUnreachable(f"{NODE_PROBLEM}: its answer is not a pcap")
    return answer


def ask_nodes(
    nodes: Sequence[Node], path: str, params: Mapping[str, str], method: str = "GET", *, merge: bool = False
) -> tuple[list[NodeAnswer], list[tuple[Node, NodeFailure]]]:
    """Every node asked at once (a thread each); the answers opened and the failures, in node order."""
    if len(nodes) == 1:
        results = [_opened(nodes[0], path, params, method, merge)]
    else:
        with ThreadPoolExecutor(max_workers=len(nodes), thread_name_prefix="par-node") as pool:
            results = list(pool.map(lambda node: _opened(node, path, params, method, merge), nodes))
    answers = [r for r in results if isinstance(r, NodeAnswer)]
    failures = [(node, r) for node, r in zip(nodes, results, strict=True) if not isinstance(r, NodeAnswer)]
    return answers, failures


def every_node_failed(failures: list[tuple[Node, NodeFailure]]) -> exceptions.APIException:
    """The answer when no node could answer: one node's own failure, or one naming each."""
    if len(failures) == 1:
        return failures[0][1]
    text = "; ".join(f"node {node.id}: {failure.reason}" for node, failure in failures)
    said = {failure.status_code for _, failure in failures if isinstance(failure, NodeSaid)}
    if len(said) == 1 and all(isinstance(f, NodeSaid) for _, f in failures):
        return NodeSaid(said.pop(), f"no node could answer: {text}")
    transport = [f for _, f in failures if not isinstance(f, NodeSaid)]
    if all(isinstance(f, NodeTimeout) for f in transport):
        return NodeTimeout(f"{NODE_PROBLEM}: {text}")
    return NodeUnreachable(f"{NODE_PROBLEM}: {text}")


def answer_limits(options: AnswerOptions) -> Limits:
    """Where the whole answer ends: ``limit_packets``, and ``limit_bytes`` cut at PAR_MAX_ANSWER_BYTES."""
    size = options.limit_bytes
    if size is not None:
        size = min(size, settings.PAR_MAX_ANSWER_BYTES)
    return Limits(options.limit_packets, size)


def summed_estimate(answers: list[NodeAnswer], limits: Limits | None = None) -> tuple[int, int] | None:
    """(packets, bytes) the nodes' heads estimate, summed, and bounded by the answer's ``limits``.

    None when a node gave none.
    """
    values = [[node_header(a.node, a.headers, name) or "" for a in answers] for name in ESTIMATE_HEADERS]
    if not all(v.isdigit() for column in values for v in column):
        return None
    packets, size = (sum(int(v) for v in column) for column in values)
    if limits is not None:
        # the merged header: a section header and an interface block per node and link type
        packets, size = limits.bound(packets, size, LIMIT_SLACK)
    return packets, size


def _too_large(
    answers: list[NodeAnswer], failures: list[tuple[Node, NodeFailure]], options: AnswerOptions
) -> AnswerTooLarge | None:
    """The 413 of the whole answer, decided before its first byte; None when it may be sent."""
    if options.limit_bytes is not None:
        return None
    for node, failure in failures:
        if isinstance(failure, NodeSaid) and failure.status_code == 413:
            return AnswerTooLarge(f"node {node.id}: {failure.reason}")
    total = summed_estimate(answers, answer_limits(options))
    if total is None or total[1] <= settings.PAR_MAX_ANSWER_BYTES:
        return None
    return AnswerTooLarge(too_large_message(total[1], total[0], settings.PAR_MAX_ANSWER_BYTES))


def _failed_header(failures: list[tuple[Node, NodeFailure]]) -> str:
    return ", ".join(f"{node.id}={_UNSAFE.sub(' ', str(failure.reason))}" for node, failure in failures)


def _merged_headers(answers: list[NodeAnswer], response, fmt_pcapng: bool, limits: Limits) -> None:
    """Headers of an answer made of several nodes': estimates summed (within the limits), window and damage passed on."""
    total = summed_estimate(answers, limits)
    if total is not None:
        for name, value in zip(ESTIMATE_HEADERS, total, strict=True):
            response[name] = str(value)
    window = node_header(answers[0].node, answers[0].headers, "X-PAR-Window")
    if window is not None:
        response["X-PAR-Window"] = window
    for name in ("X-PAR-Damaged", UNINDEXED):
        named = [(a.node.id, node_header(a.node, a.headers, name)) for a in answers]
        if any(value for _, value in named):
            response[name] = ", ".join(f"{node}={value}" for node, value in named if value)
    found = _FILENAME.search(node_header(answers[0].node, answers[0].headers, "Content-Disposition") or "")
    name = found.group(1) if found else "par.pcap"
    if fmt_pcapng:
        name = name.rsplit(".", 1)[0] + ".pcapng"
    ids = "-".join(str(a.node.id) for a in answers)
    response["Content-Disposition"] = f'attachment; filename="nodes-{ids}-{name}"'
    response["Cache-Control"] = "no-store"


def _merged(answers: list[NodeAnswer], merger: Merger) -> Iterator[bytes]:
    """The merged stream; a node failing mid-stream is NodeFailedMidStream, naming it."""
    try:
        yield from merger.stream()
    except SourceFailed as exc:
        answer = answers[exc.index]
        answer.failure = f"failed mid-stream: {type(exc.cause).__name__}"
        log.warning("node %s failed after %d bytes: %s", answer.node.id, answer.received, exc.cause)
        proxy_failed(answer.node.id, "mid-stream")
        raise NodeFailedMidStream(
            f"node failed mid-stream: node {answer.node.id} after {answer.received} bytes"
        ) from None


class SelfLoggedResponse(StreamingHttpResponse):
    """A streamed download whose request-log row its body (``Download``) writes when it ends."""

    par_logs_itself = True


def pcap_answer(
    nodes: Sequence[Node],
    params: Mapping[str, str],
    entry: RequestLog,
    *,
    method: str = "GET",
    pcapng: bool = False,
) -> StreamingHttpResponse:
    """``/data.pcap`` from ``nodes``: one node's passed through, several merged; HEAD: the headers only."""
    merge = len(nodes) > 1 or pcapng
    options = parse_answer_options(params)  # checked before any node was asked
    limits = answer_limits(options)
    node_params = dict(params)
    if limits.bytes is not None:  # a node never sends more than this collector's maximum either
        node_params["limit_bytes"] = str(max(limits.bytes, MIN_LIMIT_BYTES))
    if merge:
        node_params.pop("format", None)  # the merge writes the answer's format
        if limits.bytes is not None:
            node_params["limit_bytes"] = str(min(limits.bytes + LIMIT_SLACK, MAX_COUNT))
    answers, failures = ask_nodes(nodes, "data.pcap", node_params, method, merge=merge)
    for node, failure in failures:
        status = failure.status_code if isinstance(failure, NodeSaid) else None
        entry.node_answered(node.id, status, 0, str(failure.reason))
    if not answers:
        raise every_node_failed(failures)
    too_large = _too_large(answers, failures, options)
    if too_large is not None:
        for answer in answers:
            answer.close()
            entry.node_answered(answer.node.id, 200, answer.received, "not sent: the answer is too large")
        raise too_large
    if method == "HEAD":
        for answer in answers:
            entry.node_answered(answer.node.id, 200)
        response = StreamingHttpResponse(iter(()), status=200)
        if merge:
            pcapng_any = pcapng or any(
                a.headers.get("Content-Type", "").startswith(PCAPNG_TYPE) for a in answers
            )
            response["Content-Type"] = PCAPNG_TYPE if pcapng_any else PCAP_TYPE
            _merged_headers(answers, response, pcapng_any, limits)
    elif merge:
        readers, names = [a.reader for a in answers], [node_label(a.node) for a in answers]
        merger = Merger(readers, names, pcapng=pcapng, limits=limits)
        response = SelfLoggedResponse(Download(_merged(answers, merger), entry, answers), status=200)
        response["Content-Type"] = merger.content_type
        _merged_headers(answers, response, merger.pcapng, limits)
    else:
        response = SelfLoggedResponse(Download(passthrough(answers[0]), entry, answers), status=200)
    if not merge:
        for name in (*PASSED_HEADERS, *PAR_HEADERS):
            value = node_header(answers[0].node, answers[0].headers, name)
            if value is not None:
                response[name] = value
    response["X-PAR-Nodes"] = ",".join(str(a.node.id) for a in answers)
    if failures:
        response["X-PAR-Nodes-Failed"] = _failed_header(failures)
    return response
