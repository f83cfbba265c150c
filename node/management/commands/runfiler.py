"""manage.py runfiler: file and index finished capture files (docs/SPEC.md "Management commands")."""

from __future__ import annotations

import math
import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from node.filer import FilerBusy, FilerOptions, check_dirs, run_loop, run_pass, runner_lock
from node.jobs import cores_available, jobs_count
from node.tiers import archive_options


def _percent(text: str) -> float:
    value = float(text)
    if not 0 < value < 100:
        raise ValueError(text)
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:  # "inf" is a float too, but no timeout
        raise ValueError(text)
    return value


_percent.__name__ = "percentage between 0 and 100"
_positive.__name__ = "positive number"


class Command(BaseCommand):
    help = "Move every finished capture file into FILER_DIR/YYYY/MM/DD/HH/ and index it."
    # The directories come from the options, not only from settings: check them here instead.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-S", "--simulate", action="store_true", help="log what would happen, change nothing"
        )
        parser.add_argument("--capture-dir", type=Path, default=settings.PAR_CAPTURE_DIR)
        parser.add_argument("--filer-dir", type=Path, default=settings.PAR_FILER_DIR)
        parser.add_argument("--prefix", default=settings.PAR_FILE_PREFIX, help="capture file name prefix")
        zone = parser.add_mutually_exclusive_group()
        zone.add_argument("--utc", dest="utc", action="store_true", default=settings.PAR_UTC)
        zone.add_argument(
            "--localtime", dest="utc", action="store_false", help="hour directories in local time"
        )
        parser.add_argument(
            "--loop", type=_positive, metavar="SECONDS", help="run a pass every SECONDS, forever"
        )
        parser.add_argument(
            "--keep-free",
            type=_percent,
            metavar="PERCENT",
            help="delete the oldest hours until this much is free",
        )
        parser.add_argument("--max-age", type=_positive, metavar="HOURS", help="delete hours older than this")
        parser.add_argument(
            "--compress",
            choices=("zstd", "none"),
            default=settings.PAR_COMPRESS,
            help="store filed captures zstd-compressed (seekable), or as captured (default: PAR_COMPRESS)",
        )
        parser.add_argument(
            "--jobs",
            type=jobs_count,
            default=cores_available(),
            metavar="N",
            help="index N captures at once, in worker processes (default: the cores available)",
        )

    def handle(self, *args, **opts) -> None:
        prefix = opts["prefix"]
        if not prefix or "/" in prefix or prefix.startswith("."):
            raise CommandError(f"--prefix must be a plain file name prefix, not {prefix!r}")
        options = FilerOptions(
            capture_dir=opts["capture_dir"],
            filer_dir=opts["filer_dir"],
            data_dir=settings.PAR_DATA_DIR,
            prefix=prefix,
            utc=opts["utc"],
            simulate=opts["simulate"],
            keep_free=opts["keep_free"],
            max_age_hours=opts["max_age"],
            jobs=opts["jobs"],
            compress=opts["compress"],
            level=settings.PAR_COMPRESS_LEVEL,
            archive=archive_options(in_filer=True),
        )
        try:
            check_dirs(options)
            if options.simulate:  # changes nothing, not even a lock: may run beside a filer
                self._run(options, opts["loop"])
            else:
                with runner_lock(options.data_dir):
                    self._run(options, opts["loop"])
        except FilerBusy as exc:
            raise CommandError(str(exc), returncode=1)
        except OSError as exc:  # a missing directory, an unwritable PAR_DATA_DIR, ...
            raise CommandError(str(exc))

    def _run(self, options: FilerOptions, loop: float | None) -> None:
        if loop is None:
            summary = run_pass(options)
            self.stdout.write(summary.line(options.simulate))
            if summary.failed:
                raise CommandError(f"{len(summary.failed)} capture files could not be filed (see the log)")
            return
        stop = threading.Event()

        def request_stop(signum: int, frame: object) -> None:
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, request_stop)
        self.stdout.write(f"Filing every {loop:g} seconds; SIGTERM or Ctrl-C stops")
        run_loop(options, loop, stop)
