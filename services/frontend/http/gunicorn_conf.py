"""gunicorn settings that come from the mesh configuration (circus.ini passes the rest).

gunicorn's own log lines (worker boots, timeouts, errors) become JSON lines like every other
process's, at the configured level.
"""

from common.config import load_settings

_settings = load_settings()

# Read by the worker (services/frontend/http/server.py): connections it holds at most.
worker_connections = _settings.http_max_connections

loglevel = _settings.log_level.lower()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "common.lifecycle.JsonFormatter", "stage": "frontend"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        }
    },
    "root": {"level": _settings.log_level.upper(), "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {
            "level": _settings.log_level.upper(),
            "handlers": ["stderr"],
            "propagate": False,
        },
        "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
        # tornado (the worker's HTTP parser) logs every malformed request and cut-off
        # connection at INFO: a line per client mistake, which the client already hears.
        "tornado": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
    },
}
