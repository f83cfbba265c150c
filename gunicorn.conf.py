"""gunicorn settings for either role: ``PAR_ROLE=node gunicorn parsite.wsgi -c gunicorn.conf.py``.

Threaded workers whose event loop reads request heads before a thread is given (see
parsite/gunicorn_worker.py and docs/performance.md "Serving"): a download holds one thread while it runs, a
half-sent head holds none. 32 threads a worker, so 20 downloads at once leave threads for /ping
and small queries (chosen by `make bench-load`, bench/RESULTS.md). Every value can be overridden
with the usual GUNICORN_CMD_ARGS or the PAR_BIND / PAR_WORKERS / PAR_THREADS /
PAR_HEADER_TIMEOUT variables.
"""

import os

_role = os.environ.get("PAR_ROLE", "collector").strip().lower() or "collector"
_port = 9002 if _role == "node" else 9001

bind = os.environ.get("PAR_BIND", f"127.0.0.1:{_port}").split(",")
# gthread whose threads only get connections with a complete request head (parsite/gunicorn_worker.py).
worker_class = "parsite.gunicorn_worker.HeadFirstThreadWorker"
workers = int(os.environ.get("PAR_WORKERS", "2"))
threads = int(os.environ.get("PAR_THREADS", "32"))
# A streamed answer may take long; the per-chunk read timeout lives in the app.
timeout = int(os.environ.get("PAR_WORKER_TIMEOUT", "300"))
graceful_timeout = 30
keepalive = 5
accesslog = "-"
errorlog = "-"
# Both logs scrubbed of keys and secrets, timed in ISO 8601, JSON lines with PAR_LOG_FORMAT=json;
# the access log never writes the query string (the seed's clients put api_key there).
logger_class = "parsite.gunicorn_logging.GunicornLogger"
proc_name = f"par-{_role}"
forwarded_allow_ips = os.environ.get("PAR_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")


# /metrics adds up every worker's counts (prometheus_client multiprocess, parsite/metricsdir.py).
# Settings that cannot load stop the start here, with one line naming the setting, instead of
# every worker failing to boot with its traceback.
def on_starting(server):
    import sys

    from django.core.exceptions import ImproperlyConfigured

    from parsite.metricsdir import prepare_metrics_dir

    prepare_metrics_dir()  # first: prometheus_client reads its directory when first imported
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parsite.settings")
    try:
        from django.conf import settings

        settings.INSTALLED_APPS  # noqa: B018  (loads parsite.settings, which checks the environment)
    except ImproperlyConfigured as exc:
        print(f"Packets at Rest ({_role}) cannot start: ImproperlyConfigured: {exc}", file=sys.stderr)
        sys.exit(1)


def child_exit(server, worker):
    from parsite.metricsdir import worker_exited

    worker_exited(worker.pid)


# What a worker loaded to start (Django, the apps, numpy: ~100,000 objects) lives as long as the
# worker; frozen, the collector of reference cycles never walks it again. Unfrozen, each of its
# full collections took ~60 ms, a stall of one call in about a thousand (bench/RESULTS.md).
def post_worker_init(worker):
    import gc

    gc.freeze()
