"""gunicorn settings for either role: ``PAR_ROLE=node gunicorn parsite.wsgi -c gunicorn.conf.py``.

Threaded workers (gthread) so that a long pcap download does not block other
requests. Every value can be overridden with the usual GUNICORN_CMD_ARGS or the
PAR_BIND / PAR_WORKERS / PAR_THREADS variables.
"""

import os

_role = os.environ.get("PAR_ROLE", "collector").strip().lower() or "collector"
_port = 9002 if _role == "node" else 9001

bind = os.environ.get("PAR_BIND", f"127.0.0.1:{_port}").split(",")
worker_class = "gthread"
workers = int(os.environ.get("PAR_WORKERS", "2"))
threads = int(os.environ.get("PAR_THREADS", "8"))
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
def on_starting(server):
    from parsite.metricsdir import prepare_metrics_dir

    prepare_metrics_dir()


def child_exit(server, worker):
    from parsite.metricsdir import worker_exited

    worker_exited(worker.pid)
