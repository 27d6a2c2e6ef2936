"""gunicorn's settings for `gunicorn zeckta.wsgi`, read from the working directory (or pass `-c` with this path).

The master starts the metrics process group of its workers before any of them is forked
(zeckta.multiprocess), and tells it when one exits. Command-line options still win for everything else.
"""

import sys
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BASE_DIR))  # gunicorn adds its --chdir only after reading this file
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)  # METRICS_DIR may be set there, as settings read it

from zeckta import multiprocess  # noqa: E402

multiprocess.group_start("web")


def child_exit(server, worker) -> None:
    multiprocess.process_exited(worker.pid)
