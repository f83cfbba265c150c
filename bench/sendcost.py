"""What sending a file's bytes over loopback costs this machine: the floor under a node's CPU per MB.

    .venv/bin/python bench/sendcost.py              # 256 MiB, each way three times
    .venv/bin/python bench/sendcost.py --size-mb 64

Writes a file of random bytes under bench/out/sendcost/ (read once so the page cache holds it),
then sends it over a loopback TCP connection to a reader in another process, in 2 MiB steps, each
of these ways, and prints the rate and the sending thread's CPU (user + system) per MB:

    pread only          read each step into one buffer, send nothing (the read's own cost)
    pread + sendall     read it, then send the buffer (what a server does with bytes it was given)
    pread + join + sendall
                        read it, copy it into a new bytes object, send that (a piece joined)
    sendfile            the kernel sends the file's pages, no byte in user space
    pread + sendfile    read it to decide on it, then let the kernel send the same range

The kernel's share of a loopback send (TCP, and the receiving side's processing it runs for the
sender) is counted in the sender's system time, so "sendfile" is the least a server can spend per
MB sent here, whatever it does before; each way is run three times and the cheapest kept.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEP = 2 << 20


def thread_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


def connected_reader() -> tuple[socket.socket, int]:
    """A connection to a child process that reads everything sent and discards it: (socket, pid)."""
    listener = socket.create_server(("127.0.0.1", 0))
    pid = os.fork()
    if pid == 0:
        reader = socket.create_connection(listener.getsockname())
        sink = bytearray(1 << 20)
        while reader.recv_into(sink):
            pass
        os._exit(0)
    connection, _ = listener.accept()
    listener.close()
    return connection, pid


def ways(fd: int, size: int) -> dict[str, Callable[[socket.socket], None]]:
    buffer = bytearray(STEP)
    view = memoryview(buffer)
    steps = range(0, size, STEP)

    def pread_only(_: socket.socket) -> None:
        for offset in steps:
            os.preadv(fd, [view], offset)

    def pread_sendall(out: socket.socket) -> None:
        for offset in steps:
            os.preadv(fd, [view], offset)
            out.sendall(view)

    def pread_join_sendall(out: socket.socket) -> None:
        for offset in steps:
            os.preadv(fd, [view], offset)
            out.sendall(b"".join([view[: STEP // 2], view[STEP // 2 :]]))

    def sendfile(out: socket.socket) -> None:
        for offset in steps:
            os.sendfile(out.fileno(), fd, offset, STEP)

    def pread_sendfile(out: socket.socket) -> None:
        for offset in steps:
            os.preadv(fd, [view], offset)
            os.sendfile(out.fileno(), fd, offset, STEP)

    return {
        "pread only": pread_only,
        "pread + sendall": pread_sendall,
        "pread + join + sendall": pread_join_sendall,
        "sendfile": sendfile,
        "pread + sendfile": pread_sendfile,
    }


def measure(send: Callable[[socket.socket], None], size: int) -> tuple[float, float]:
    """(MB/s, CPU ms per MB of the sending thread) of one run."""
    out, pid = connected_reader()
    try:
        wall, cpu = time.perf_counter(), thread_cpu()
        send(out)
        wall, cpu = time.perf_counter() - wall, thread_cpu() - cpu
    finally:
        out.close()
        os.waitpid(pid, 0)
    megabytes = size / 1e6
    return megabytes / wall, cpu * 1000 / megabytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256, help="MiB sent each way")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each way (the cheapest kept)")
    args = parser.parse_args()
    size = args.size_mb << 20
    path = ROOT / "bench" / "out" / "sendcost" / "random.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.stat().st_size != size:
        with open(path, "wb") as out:
            for _ in range(size >> 20):
                out.write(os.urandom(1 << 20))
    fd = os.open(path, os.O_RDONLY)
    try:
        for offset in range(0, size, 1 << 24):  # into the page cache
            os.pread(fd, 1 << 24, offset)
        print(f"{args.size_mb} MiB over loopback in {STEP >> 20} MiB steps; load {os.getloadavg()[0]:.2f}")
        for name, send in ways(fd, size).items():
            runs = [measure(send, size) for _ in range(args.repeat)]
            rate, cpu = min(runs, key=lambda run: run[1])
            print(f"  {name:24} {rate:8,.0f} MB/s  {cpu:6.3f} ms CPU/MB")
    finally:
        os.close(fd)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
