"""A minimal Django 6 project with GlitchTip 6's task set-up (schedule, queues, backends).

Read from GlitchTip 6's settings.py: the same schedule names and intervals, queues
`default` and `ingest` (ingest batched: 100 tasks or 2 s), the Valkey backend through a
django-vcache cache when a broker URL is set, else the database backend (GlitchTip's
"all in one" mode with VALKEY_URL empty) with psycopg's pool as GlitchTip sizes it.
Everything comes from the environment that lab.sh writes; loopback only.
"""

import os
from pathlib import Path

from django_vtasks.scheduler import crontab

BACKEND = os.environ.get("VT_BACKEND", "valkey")
STATE_DIR = Path(os.environ.get("VT_STATE_DIR", "/tmp"))

SECRET_KEY = "vtlab-loopback-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "vtlab.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["django_vtasks", "vtlab"]
MIDDLEWARE = []

if BACKEND == "db":
    INSTALLED_APPS.append("django_vtasks.db")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": "127.0.0.1",
            "PORT": os.environ["VT_PG_PORT"],
            "NAME": "glitchtip",
            "USER": "glitchtip",
            "PASSWORD": os.environ["VT_PG_PASSWORD"],
            "CONN_MAX_AGE": 0,
            "DISABLE_SERVER_SIDE_CURSORS": True,
            # GlitchTip's defaults (DATABASE_POOL_MIN_SIZE, _MAX_SIZE, _TIMEOUT).
            "OPTIONS": {"pool": {"min_size": 2, "max_size": 20, "timeout": 30}},
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    TASKS = {"default": {"BACKEND": "django_vtasks.backends.db.DatabaseTaskBackend"}}
elif BACKEND == "valkey":
    # The web process's own tables are not under test: a file database is enough.
    DATABASES = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(STATE_DIR / "django.sqlite3")}
    }
    CACHES = {
        "default": {
            "BACKEND": "django_vcache.backend.ValkeyCache",
            "LOCATION": os.environ["VT_VALKEY_URL"],
        }
    }
    TASKS = {
        "default": {
            "BACKEND": "django_vtasks.backends.valkey.ValkeyTaskBackend",
            "OPTIONS": {"cache_alias": "default"},
        }
    }
else:
    raise RuntimeError(f"VT_BACKEND must be valkey or db, got {BACKEND!r}")

VTASKS_QUEUES = {
    "default": {},
    "ingest": {"batch": {"count": 100, "timeout": 2.0}},
}

# GlitchTip 6: UPTIME_CHECK_INTERVAL = 1, ALERT_NOTIFICATION_INTERVAL = 60,
# perform-maintenance at 05:00 every day.
VTASKS_SCHEDULE = {
    "send-alert-notifications": {"task": "vtlab.tasks.process_event_alerts", "schedule": 60},
    "perform-maintenance": {
        "task": "vtlab.tasks.perform_maintenance",
        "schedule": crontab(hour=5, minute=0),
    },
    "uptime-dispatch-checks": {"task": "vtlab.tasks.dispatch_checks", "schedule": 1},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"t": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "t"}},
    "root": {"handlers": ["console"], "level": os.environ.get("VT_LOG_LEVEL", "INFO")},
    # One line per enqueued task at 1 Hz is noise; errors still show.
    "loggers": {"django_vtasks.scheduler": {"level": os.environ.get("VT_SCHEDULER_LOG_LEVEL", "WARNING")}},
}
