"""``par export`` and ``par exports``: long answers as jobs on the collector (POST /exports).

``par export`` starts a job (or finds the same query's job already there), shows its progress,
then downloads its file into a ``.part`` file beside the output. An interrupted download is
resumed with ``Range`` when ``par export`` is run again with the same query; the whole file is
checked against the job's sha256 before it is renamed to its name.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from par_client.config import Settings
from par_client.errors import OK, SERVER_ERROR, CutShort, OutputError, ParError
from par_client.http import Collector, iter_body
from par_client.progress import Progress, size

POLL = 1.0  # seconds between two looks at a running job
COLUMNS = ("id", "state", "progress", "bytes", "created", "query")


def warn(message: str) -> None:
    print(f"par: {message}", file=sys.stderr)


def job_line(job: dict[str, Any]) -> str:
    nodes = ", ".join(f"{n}: {o}" for n, o in (job.get("nodes") or {}).items())
    text = f"export {job['id']} {job['state']}: {job.get('progress', 0):.0%}, {size(job.get('bytes', 0))}"
    return text + (f" [{nodes}]" if nodes else "")


def wait_done(collector: Collector, job: dict[str, Any], *, quiet: bool) -> dict[str, Any]:
    """Follow the job until it is no longer queued or running, its progress on one line of stderr."""
    show = not quiet and sys.stderr.isatty()
    shown = 0
    while job["state"] in ("queued", "running"):
        if show:
            line = job_line(job)
            sys.stderr.write("\r" + line.ljust(shown))
            sys.stderr.flush()
            shown = len(line)
        time.sleep(POLL)
        job = collector.get_json(f"exports/{job['id']}")
    if show and shown:
        sys.stderr.write("\r" + " " * shown + "\r")
    return job


def export(
    settings: Settings, params: dict[str, str], output: str | None, *, quiet: bool, wait: bool = True
) -> int:
    collector = Collector(settings)
    started = time.monotonic()
    job = collector.get_json("exports", params, method="POST")
    if not quiet:
        warn(f"export {job['id']}: {job['state']}")
    if not wait:
        print(job["id"])
        return OK
    job = wait_done(collector, job, quiet=quiet)
    if job["state"] != "done":
        raise ParError(f"export {job['id']} is {job['state']}: {job.get('error') or 'no file'}", SERVER_ERROR)
    path = Path(
        output or f"export-{job['id']}.{'pcapng' if str(job.get('download', '')).endswith('ng') else 'pcap'}"
    )
    written = download(collector, job, path, quiet=quiet)
    if not quiet:
        warn(
            f"{job['packets']} packets, {written} bytes ({size(written)}) to {path} in"
            f" {time.monotonic() - started:.1f} s, sha256 {job['sha256']}"
        )
    return OK


def part_path(path: Path, job: dict[str, Any]) -> Path:
    """Where the download is kept until whole: beside ``path``, named after the job (to resume it)."""
    return path.with_name(f".{path.name}.export-{job['id']}.part")


def download(collector: Collector, job: dict[str, Any], path: Path, *, quiet: bool) -> int:
    """The job's file into ``path``: resumed from its .part file, checked, renamed; bytes of the file."""
    part = part_path(path, job)
    have = part.stat().st_size if part.exists() else 0
    if have > job["bytes"]:
        part.unlink()
        have = 0
    headers = {"Range": f"bytes={have}-", "If-Range": f'"{job["sha256"]}"'} if have else {}
    if have and not quiet:
        warn(f"resuming the download at {size(have)}")
    progress = Progress(sys.stderr, job["bytes"]) if not quiet and sys.stderr.isatty() else None
    if progress is not None:
        progress.done = have
    try:
        if have < job["bytes"] or not have:
            with collector.request(job["download"], headers=headers) as response:
                mode = "ab" if response.status_code == 206 else "wb"
                fd = os.open(
                    part, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "ab" else os.O_TRUNC), 0o600
                )
                with os.fdopen(fd, mode) as out:
                    for chunk in iter_body(response):
                        out.write(chunk)
                        if progress is not None:
                            progress.update(len(chunk))
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}")
    finally:
        if progress is not None:
            progress.close()
    digest = hashlib.sha256()
    with open(part, "rb") as whole:
        while chunk := whole.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != job["sha256"]:
        part.unlink()
        raise CutShort(f"the download of export {job['id']} does not match its sha256: run par export again")
    try:
        os.replace(part, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}")
    return path.stat().st_size


def exports(settings: Settings, *, as_json: bool) -> int:
    answer = Collector(settings).get_json("exports")
    jobs = answer.get("exports", [])
    if as_json:
        import json

        json.dump(answer, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return OK
    from par_client.commands import print_table, short_time

    rows = [
        [
            str(job["id"]),
            job["state"] + (f" ({job['error']})" if job.get("error") and job["state"] == "failed" else ""),
            f"{job.get('progress', 0):.0%}",
            str(job.get("bytes", 0)),
            short_time(job.get("created")),
            job.get("query", ""),
        ]
        for job in jobs
    ]
    print_table(rows, COLUMNS)
    return OK
