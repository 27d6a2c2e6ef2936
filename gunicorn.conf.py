"""gunicorn's settings for `gunicorn zeckta.wsgi`, read from the working directory (or pass `-c` with this path).

The master starts the metrics process group of its workers before any of them is forked
(zeckta.multiprocess), and tells it when one exits. Command-line options still win for everything else.
"""

import sys
from pathlib import Path

import environ
from gunicorn.glogging import Logger

BASE_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BASE_DIR))  # gunicorn adds its --chdir only after reading this file
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)  # METRICS_DIR may be set there, as settings read it

from zeckta import multiprocess  # noqa: E402

multiprocess.group_start("web")


def child_exit(server, worker) -> None:
    multiprocess.process_exited(worker.pid)


# --- The access log: never a query string ------------------------------------------------------------
# Providers that sign nothing (Infobip, Africa's Talking, the `http` backend) may carry the route's receipt
# token in the receipt URL (`?token=`), and gunicorn's default access line is the full request line. So the
# access log (`--access-logfile`, on in the Procfile and the systemd unit) writes paths only: whatever
# format is set, here or on the command line, its atoms hold no query string, no referrer's query and no
# Authorization header. The line ends with the request's X-Request-ID, the key to the service's own log.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s %(D)sus "%({x-request-id}o)s"'


def _without_query(url: str) -> str:
    return url.split("?", 1)[0]


class QuerylessLogger(Logger):
    def atoms(self, resp, req, environ, request_time) -> dict:
        atoms = super().atoms(resp, req, environ, request_time)
        path = _without_query(environ.get("RAW_URI") or environ.get("PATH_INFO") or "")
        atoms["r"] = f"{environ.get('REQUEST_METHOD')} {path} {environ.get('SERVER_PROTOCOL')}"
        atoms["q"] = ""
        atoms["f"] = _without_query(atoms.get("f") or "-")
        for name in ("{raw_uri}e", "{query_string}e", "{request_uri}e"):
            if name in atoms:
                atoms[name] = _without_query(str(atoms[name])) if name != "{query_string}e" else ""
        atoms.pop("{authorization}i", None)
        return atoms


logger_class = QuerylessLogger
