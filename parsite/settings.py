"""Settings for both roles, read from the environment (see docs/SPEC.md "Configuration")."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import secrets
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from api.version import VERSION
from engine.durable import atomic_write
from parsite.envconf import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_networks,
    env_path,
    env_str,
    host_time_zone,
    refuse_placeholders,
)
from parsite.logs import log_format, logging_config
from parsite.plugins import load_plugins, parse_plugins_config

BASE_DIR = Path(__file__).resolve().parent.parent

# --- Packets at Rest -------------------------------------------------------

refuse_placeholders()

PAR_ROLE = env_choice("PAR_ROLE", "collector", ("collector", "node"))
PAR_DATA_DIR = env_path("PAR_DATA_DIR", BASE_DIR / "var").resolve()
PAR_CAPTURE_DIR = env_path("PAR_CAPTURE_DIR", "/data/pcap")
PAR_FILER_DIR = env_path("PAR_FILER_DIR", "/data/filed")
PAR_FILE_PREFIX = env_str("PAR_FILE_PREFIX", "pcap")
if not PAR_FILE_PREFIX or "/" in PAR_FILE_PREFIX or PAR_FILE_PREFIX.startswith("."):
    raise ImproperlyConfigured(f"PAR_FILE_PREFIX must be a plain file name prefix, not {PAR_FILE_PREFIX!r}")
PAR_UTC = env_bool("PAR_UTC", True)
PAR_NODE_ALLOW = env_networks("PAR_NODE_ALLOW", "127.0.0.0/8,::1/128")
PAR_NODE_DENY = env_networks("PAR_NODE_DENY", "")
PAR_NODE_SECRET = env_str("PAR_NODE_SECRET", "")
# It travels in an HTTP header: anything but printable ASCII makes every collector -> node call fail,
# and spaces at either end are dropped by header parsing. The value is never shown.
_secret_is_header_safe = PAR_NODE_SECRET.isascii() and PAR_NODE_SECRET.isprintable()
if not _secret_is_header_safe or PAR_NODE_SECRET.strip() != PAR_NODE_SECRET:
    raise ImproperlyConfigured(
        "PAR_NODE_SECRET must be printable ASCII without spaces at either end (it is sent in an HTTP header)"
    )
# 31 days: a narrow query skips the hours that cannot match (docs/long-windows.md); the estimate and
# PAR_MAX_ANSWER_BYTES still guard a broad one.
PAR_MAX_WINDOW = env_int("PAR_MAX_WINDOW", 31 * 86400, minimum=1)
# A /data.pcap whose estimate exceeds this many bytes without limit_bytes is a 413 (default 4 GiB).
PAR_MAX_ANSWER_BYTES = env_int("PAR_MAX_ANSWER_BYTES", 4 << 30, minimum=0)
# Who may scrape GET /metrics (both roles; on a node instead of PAR_NODE_ALLOW and the secret).
PAR_METRICS_ALLOW = env_networks("PAR_METRICS_ALLOW", "127.0.0.0/8,::1/128")
# Proxies (CIDRs) whose X-Forwarded-For a node trusts; none by default, so the
# socket peer is the caller and a forged header cannot get past the ACL.
PAR_TRUSTED_PROXIES = env_networks("PAR_TRUSTED_PROXIES", "")
# Collector -> node timeouts in seconds (connect, read between chunks).
PAR_NODE_CONNECT_TIMEOUT = env_int("PAR_NODE_CONNECT_TIMEOUT", 5, minimum=1)
PAR_NODE_READ_TIMEOUT = env_int("PAR_NODE_READ_TIMEOUT", 120, minimum=1)
# Requests per key per minute on the collector (DRF throttling); 0 = unlimited.
PAR_KEY_RATE = env_int("PAR_KEY_RATE", 600, minimum=0)
# Downloads (/data.pcap) one key may run at once at a collector, counted across workers.
PAR_KEY_STREAMS = env_int("PAR_KEY_STREAMS", 4, minimum=1)
# A node worker's downloads producing their next chunk at once (api/streamgate.py): more lets a
# worker read several cold captures from disk at once, at the cost of small calls' latency.
PAR_STREAM_PRODUCERS = env_int("PAR_STREAM_PRODUCERS", 1, minimum=1)
# Storage tiers (SPEC.md "Storage tiers", docs/storage.md): captures compressed at filing (zstd
# seekable) and archived to S3-compatible object storage after PAR_ARCHIVE_AFTER hours.
PAR_COMPRESS = env_choice("PAR_COMPRESS", "zstd", ("zstd", "none"))
PAR_COMPRESS_LEVEL = env_int("PAR_COMPRESS_LEVEL", 3, minimum=1)
PAR_ARCHIVE_URL = env_str("PAR_ARCHIVE_URL", "").strip()
if PAR_ARCHIVE_URL and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?", PAR_ARCHIVE_URL):
    raise ImproperlyConfigured(f"PAR_ARCHIVE_URL must be s3://bucket/prefix, not {PAR_ARCHIVE_URL!r}")
PAR_ARCHIVE_ENDPOINT = env_str("PAR_ARCHIVE_ENDPOINT", "").strip()
PAR_ARCHIVE_AFTER = env_float("PAR_ARCHIVE_AFTER", 24.0, minimum=0.0)
PAR_ARCHIVE_MAX_AGE = env_float("PAR_ARCHIVE_MAX_AGE", 0.0, minimum=0.0)
# Whether runfiler --loop runs the archive pass; false when par-archive.timer (deploy/systemd) runs
# `manage.py archive` instead, so the filer itself keeps no network access (docs/storage.md).
PAR_ARCHIVE_IN_FILER = env_bool("PAR_ARCHIVE_IN_FILER", True)
# Plugins are enabled explicitly: a name is a folder under plugins/, a dotted
# name a full module path. Each is imported and validated now, so a bad one
# stops the start with its name (parsite/plugins.py); PAR_PLUGINS_CONFIG is
# JSON, {"<plugin id>": {"<setting>": value}}, and becomes the settings in effect.
PAR_PLUGINS = env_list("PAR_PLUGINS", "")
_plugins = load_plugins(PAR_PLUGINS, parse_plugins_config(env_str("PAR_PLUGINS_CONFIG", "")), role=PAR_ROLE)
PAR_PLUGINS_CONFIG = _plugins.settings

# Private: it holds the secrets below and, on a collector, the database (docs/operator.md "Deployment").
PAR_DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
# The index build's compiled code (engine/native.py) is cached beside it; a read-only code tree
# keeps it in PAR_DATA_DIR instead, so each process loads it rather than compiling it again.
_compiled_cache = BASE_DIR / "engine" / "__pycache__"
if not os.access(_compiled_cache if _compiled_cache.exists() else _compiled_cache.parent, os.W_OK):
    os.environ.setdefault("NUMBA_CACHE_DIR", str(PAR_DATA_DIR / "numba-cache"))


def _persistent_secret(name: str, if_replaced: str) -> str:
    """A random secret generated once and kept in PAR_DATA_DIR (mode 0600)."""
    path = PAR_DATA_DIR / name
    try:
        return _read_secret(path, if_replaced)
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(48)
    try:
        with atomic_write(path, mode=0o600, exclusive=True) as out:
            out.write(f"{value}\n".encode())
    except FileExistsError:
        pass  # first writer wins; a concurrent start reads its value
    return _read_secret(path, if_replaced)


def _read_secret(path: Path, if_replaced: str) -> str:
    """The secret kept in ``path``; an empty file is refused rather than taken as an empty secret."""
    value = path.read_text().strip()
    if not value:
        raise ImproperlyConfigured(f"{path} is empty: delete it to generate a new one ({if_replaced})")
    return value


# --- Exports: long answers as jobs (collector/jobs/, docs/exports.md) --------------------------

PAR_EXPORT_DIR = env_path("PAR_EXPORT_DIR", PAR_DATA_DIR / "exports")
PAR_EXPORT_TTL = env_float("PAR_EXPORT_TTL", 24.0, minimum=0.0)  # hours a finished file is kept
PAR_KEY_EXPORTS = env_int("PAR_KEY_EXPORTS", 2, minimum=1)  # jobs per key queued or running at once
PAR_EXPORT_MAX_BYTES = env_int("PAR_EXPORT_MAX_BYTES", 64 << 30, minimum=0)
PAR_EXPORT_ATTEMPTS = env_int("PAR_EXPORT_ATTEMPTS", 3, minimum=1)
# A running job's worker writes its progress every second; one silent this long has died.
PAR_EXPORT_LEASE = env_float("PAR_EXPORT_LEASE", 30.0, minimum=1.0)
# Finished files are deleted, oldest first, while the export directory's disk has less free.
PAR_EXPORT_MIN_FREE = env_int("PAR_EXPORT_MIN_FREE", 2 << 30, minimum=0)
# Jobs run on Django's task API (the django-tasks backport): on the collector's database by
# default, on Redis through RQ when PAR_TASKS_URL is redis://... (several collectors).
PAR_TASKS_URL = env_str("PAR_TASKS_URL", "").strip()
EXPORT_QUEUE = "par-exports"
# Both backends' apps are installed whichever is used, so the schema (`manage.py migrate`) is the
# same, and a collector can move from one to the other by PAR_TASKS_URL alone.
_TASK_APPS = ["django_tasks", "django_tasks_db", "django_rq"]
if PAR_TASKS_URL and not PAR_TASKS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured("PAR_TASKS_URL must be empty (the database) or redis://HOST:PORT/DB")
if PAR_TASKS_URL:
    TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": [EXPORT_QUEUE]}}
else:
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": [EXPORT_QUEUE]}}
# No RQ timeout of its own: a job ends when its merge does, or when it is cancelled.
# django-rq's admin dashboard (and the unauthenticated-by-session stats URLs it mounts) stays off.
RQ_SHOW_ADMIN_LINK = False
RQ_QUEUES = {EXPORT_QUEUE: {"URL": PAR_TASKS_URL or "redis://127.0.0.1:6379/0", "DEFAULT_TIMEOUT": -1}}

# --- Django ----------------------------------------------------------------

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or _persistent_secret(
    "secret_key", "admin sessions then end"
)
# Pepper of the API-key HMAC. Collectors sharing one database must share it.
PAR_KEY_PEPPER = os.environ.get("PAR_KEY_PEPPER") or _persistent_secret(
    "key_pepper", "warning: the API keys that exist then stop working and must be issued again"
)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

# Each role installs and loads only its own app and what it needs: a node (and its filer's every
# pass) imports no collector code, no admin, sessions or users, no django-axes; a collector no node.
# Both serve /schema and /docs (drf-spectacular). The test process runs both roles' views in
# process: tests/settings.py adds the node's app to a collector's.
_SHARED_APPS = ["django.contrib.staticfiles", "rest_framework"]
# On a node drf-spectacular is not an installed app: its views import it when a route is loaded,
# so the filer's processes (a cron pass pays its start-up every minute) never do. The docs page's
# template is found in its folder (TEMPLATES below), its assets are served by api/docs.py.
_SPECTACULAR_APPS = ["drf_spectacular", "drf_spectacular_sidecar"]
_spectacular = importlib.util.find_spec("drf_spectacular")  # where it is, without importing it
_SPECTACULAR_TEMPLATES = [
    Path(folder) / "templates" for folder in (_spectacular and _spectacular.submodule_search_locations or [])
]
if PAR_ROLE == "collector":
    INSTALLED_APPS = [
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        *_SHARED_APPS,
        *_SPECTACULAR_APPS,
        "collector.apps.CollectorConfig",
        *_TASK_APPS,  # the export jobs' task backend (above, "Exports")
        "axes",
    ]
else:
    INSTALLED_APPS = [*_SHARED_APPS, "node.apps.NodeConfig"]
    # DRF imports django.contrib.postgres (and with it psycopg) when it can, for model fields a
    # node never has: a node has no database to speak of, so the import is refused instead.
    sys.modules.setdefault("django.contrib.postgres", None)  # type: ignore[arg-type]
INSTALLED_APPS += _plugins.apps  # the plugins that apply to this role

MIDDLEWARE = [
    "api.metrics.RequestMetricsMiddleware",  # first: it times every answer, static files too
    "api.headers.AnswerHeaders",  # security headers, CSP and no-store on every answer; TRACE refused
    *(["api.streamgate.CallsFirstMiddleware"] if PAR_ROLE == "node" else []),  # downloads wait for calls
    # Then, on a node, nobody outside its ACL goes further, whatever else the request holds.
    *(["node.acl.RefuseOtherCallers"] if PAR_ROLE == "node" else []),
    "django.middleware.security.SecurityMiddleware",
    *(
        [
            "parsite.staticfiles.CollectorStaticFilesMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
        ]
        if PAR_ROLE == "collector"
        else []
    ),
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    *(
        [
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ]
        if PAR_ROLE == "collector"
        else []
    ),
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    *(["axes.middleware.AxesMiddleware"] if PAR_ROLE == "collector" else []),  # last, as django-axes requires
]

ROOT_URLCONF = f"parsite.urls_{PAR_ROLE}"
WSGI_APPLICATION = "parsite.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [] if PAR_ROLE == "collector" else _SPECTACULAR_TEMPLATES,
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                *(
                    [
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                    if PAR_ROLE == "collector"
                    else []
                ),
            ],
        },
    },
]

_default_db = f"sqlite:///{PAR_DATA_DIR / 'par.sqlite3'}"
_db_url = os.environ.get("DATABASE_URL") or _default_db
if not _db_url.startswith(("sqlite:", "postgres:", "postgresql:", "pgsql:")):
    raise ImproperlyConfigured(
        "DATABASE_URL must be sqlite:///PATH or postgres://USER:PW@HOST:PORT/DB, "
        f"not {_db_url.split(':', 1)[0]}:..."
    )
try:
    DATABASES = {"default": dj_database_url.parse(_db_url, conn_max_age=60, conn_health_checks=True)}
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not valid: {exc}") from None


def _create_private_database(name: object) -> None:
    """Create an SQLite database file empty and 0600 before SQLite does (with the umask's mode).

    SQLite gives its -wal, -shm and -journal files the database file's mode, so they are 0600 too.
    An existing file, an in-memory database or a missing directory are left to SQLite.
    """
    name = str(name or "")
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))


if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    _create_private_database(DATABASES["default"]["NAME"])
    # Threads of one gthread worker share the file: wait for locks instead of failing. WAL: readers
    # never wait for the writer, and a commit appends to the log without an fsync of the database
    # (synchronous=NORMAL: a power cut may lose the last commits, never corrupt the file). Each
    # thread keeps its connection (a new one costs about a millisecond per request).
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 600
# The per-key request rate and downloads are counted in the shared database (collector.limits),
# so PAR_KEY_RATE and PAR_KEY_STREAMS hold across worker processes and collectors alike.
# A node keeps no state in a database at all.
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "par_cache"}
        if PAR_ROLE == "collector"
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Logins to the admin and the web page (django-axes): failures are counted per username and
# address in the shared database, so the lock holds across collectors and worker processes;
# the address is the caller's as api/client.py resolves it behind PAR_TRUSTED_PROXIES. Each
# failure is logged (WARNING "AXES: ... login failure by {username, ip_address, ...}").
AUTHENTICATION_BACKENDS = [
    *(["axes.backends.AxesStandaloneBackend"] if PAR_ROLE == "collector" else []),
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("PAR_LOGIN_FAILURES", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("PAR_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "api.client.client_address"
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_SENSITIVE_PARAMETERS: list[str] = []  # the log names the username and the address (never the password)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# Django exports TIME_ZONE as the process's TZ: keep the host's own zone, so that local time
# (PAR_UTC=false, runfiler --localtime) is the sensor's local time. Stored datetimes stay UTC.
TIME_ZONE = host_time_zone()
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = PAR_DATA_DIR / "static"
# The collector serves the admin's, the docs' and the web page's files itself (WhiteNoise). After
# `manage.py collectstatic` they come from STATIC_ROOT, compressed (gzip, brotli when installed)
# and under content-hashed names cached for a year; before it, straight from the apps' folders,
# so a fresh install looks right too. A node has no such page: its docs' files stay behind its
# ACL (node/views.py), so nothing there answers a caller the node does not know.
_COLLECTED = (STATIC_ROOT / "staticfiles.json").is_file()
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "parsite.staticfiles.CollectedStaticFiles"
            if PAR_ROLE == "collector"
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = not _COLLECTED
if PAR_ROLE == "collector":
    STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns at every start about a missing one

# --- Security (production values documented in docs/operator.md "Deployment") --------

# Cookies (admin only) travel over TLS only, unless explicitly turned off for
# a plain-HTTP loopback setup such as `make demo`.
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", SECURE_HSTS_SECONDS > 0)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
if env_bool("DJANGO_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")
# A sensor's API answers collectors, never a browser: the HSTS preload list is no place for it,
# and `check --deploy` need not say so on every node.
SILENCED_SYSTEM_CHECKS = ["security.W021"] if PAR_ROLE == "node" else []

# --- REST framework -----------------------------------------------------------

REST_FRAMEWORK = {
    # Each role's views name their own authentication and permission classes.
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"api_key": f"{PAR_KEY_RATE}/min" if PAR_KEY_RATE else None},
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Packets at Rest",
    "DESCRIPTION": "Pull one network flow's packets out of the captures on distributed sensors.",
    "VERSION": VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.openapi.binary_downloads",
    ],
}

# --- Logging: one line per event on stderr, scrubbed of secrets (parsite/logs.py) -----------

PAR_LOG_FORMAT = log_format()  # plain, or json: one object per line for a SIEM
LOGGING_CONFIG = "parsite.logs.configure"
LOGGING = logging_config(PAR_LOG_FORMAT, os.environ.get("PAR_LOG_LEVEL", "INFO").upper())
