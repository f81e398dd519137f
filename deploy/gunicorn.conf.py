"""gunicorn settings for Caregate in production (make serve; docs/deployment.md).

Every value can be changed from the environment, so one file serves every deployment.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

from prometheus_client import multiprocess

MAX_WORKERS = 12  # past this, more processes only add memory: run another host


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw else default


# Loopback by default: the reverse proxy on this host is the only client.
bind = os.environ.get("CAREGATE_BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
# Sync workers: Django is synchronous and a sign-in is CPU-bound (the Argon2 hash), so one
# request per process; 2 x cores + 1 covers the time each spends waiting on PostgreSQL.
workers = _int("CAREGATE_WEB_CONCURRENCY", min(2 * multiprocessing.cpu_count() + 1, MAX_WORKERS))
worker_class = "sync"
# A request that takes longer is stuck (every external call has its own shorter timeout:
# SMTP 10 s, Twilio 10 s, the identity provider 5 s): the worker is killed and replaced.
timeout = _int("CAREGATE_WORKER_TIMEOUT", 30)
# On restart or deploy (SIGTERM / SIGHUP), requests in flight get this long to finish.
graceful_timeout = _int("CAREGATE_GRACEFUL_TIMEOUT", 30)
# Behind the proxy's keep-alive upstream pool: a little longer than nothing, shorter than
# the proxy's own idle timeout.
keepalive = _int("CAREGATE_KEEPALIVE", 5)
# Recycle workers now and then (a slow leak cannot grow forever), never all at once.
max_requests = _int("CAREGATE_MAX_REQUESTS", 2000)
max_requests_jitter = _int("CAREGATE_MAX_REQUESTS_JITTER", 200)
# Django decides what the proxy's headers mean (CAREGATE_BEHIND_TLS_PROXY,
# CAREGATE_TRUSTED_PROXY_COUNT); gunicorn believes none of them itself.
forwarded_allow_ips = ""
proxy_allow_ips = ""
# gunicorn's control socket (gunicornc) is one path per user: several instances on a host
# would fight over it, and nothing here uses it.
control_socket_disable = True
# Nothing Caregate serves has long headers or URLs.
limit_request_line = 4094
limit_request_fields = 100

accesslog = "-"  # stdout
errorlog = "-"
# The text form (CAREGATE_LOG_FORMAT=text); the JSON form takes the fields from the atoms.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms %({x-request-id}o)s'

if os.environ.get("CAREGATE_LOG_FORMAT", "json") == "json":
    logconfig_dict: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": "caregate.ops.logs.JsonFormatter"},
            "access": {"()": "caregate.ops.logs.AccessJsonFormatter"},
        },
        "filters": {"request_id": {"()": "caregate.ops.logs.RequestIdFilter"}},
        "handlers": {
            "error_console": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "json",
                "filters": ["request_id"],
            },
            "console": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "access",
            },
        },
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
        },
    }


def on_starting(server: Any) -> None:
    # Each worker writes its metrics into files here; /metrics adds them up.
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    # A dead worker's gauges must not be summed with the live ones (counters are kept).
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
