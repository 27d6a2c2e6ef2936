"""Runs the service in the foreground from the Procfile: web alone, or web, worker and beat when a broker is set.

Used by `make run` / `make serve`. Each process is the Procfile's line of its name, run by /bin/sh with the
virtualenv's bin first on PATH (deploy/systemd has the same lines for production).

The project's one Procfile runner, in place of honcho: `make run` needs a choice honcho does not make (web
alone when no broker is configured, since tasks then run in the request, with threads instead of processes
so the in-memory rate limit and SQLite's single writer stay right), and stopping a process's whole group,
so that Celery's pool children and gunicorn's workers go with their parent even when it died first. That is
the whole of it; honcho would be a runtime dependency for a ~100-line loop.
Ctrl-C (or SIGTERM) stops every process it started, children included; if one of them exits on its own,
the others are stopped too, so a half-running service is never left behind.

Environment: BIND (default 127.0.0.1:8000), WEB_CONCURRENCY and GUNICORN_THREADS (gunicorn workers and
threads per worker: 2 x 1 with a broker, 1 x 4 without), and the service's own settings (REDIS_URL or
CELERY_BROKER_URL decides whether a worker and beat are started). `.env` is read the way zeckta/settings.py
reads it: real environment variables win.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
STOP_GRACE_SECONDS = 20  # how long a process may take to shut down before it is killed
PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")  # the format foreman, honcho and Heroku read


def procfile(path: Path = BASE_DIR / "Procfile") -> dict[str, str]:
    """The Procfile's process types and their commands, in order (comments and blank lines skipped)."""
    lines = (PROCFILE_LINE.match(line) for line in path.read_text(encoding="utf-8").splitlines())
    return {match.group(1): match.group(2) for match in lines if match}


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def main() -> int:
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
    bind = os.environ.get("BIND", "127.0.0.1:8000")
    broker = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL") or ""
    # Without Redis the per-key rate limit is counted in process memory and SQLite takes one writer at
    # a time: one process with a few threads keeps both right. With Redis: sync workers, as deployed.
    workers = os.environ.get("WEB_CONCURRENCY", "2" if broker else "1")
    threads = os.environ.get("GUNICORN_THREADS", "1" if broker else "4")
    database = os.environ.get("DATABASE_URL") or "sqlite (db.sqlite3)"

    venv_bin = str(Path(sys.executable).parent)
    child_env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "BIND": bind,
        "WEB_CONCURRENCY": workers,
        "GUNICORN_THREADS": threads,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    # Without a broker tasks run inside the requests: the web process is the whole service. With one, every
    # process of the Procfile (web, the SMS worker, the webhooks worker, beat).
    commands = {name: command for name, command in procfile().items() if broker or name == "web"}

    print(f"database: {_redacted(database)}", flush=True)
    if broker:
        print(f"tasks: Celery worker and beat on {_redacted(broker)}", flush=True)
    else:
        print("tasks: in-process (no REDIS_URL / CELERY_BROKER_URL); SMS are sent during the request", flush=True)
    print(f"serving on http://{bind}  (Ctrl-C stops everything)", flush=True)

    # The Procfile's lines, run by the shell as Procfile runners do (`exec`: the shell becomes the process).
    # Each in its own process group, signalled as a whole: a worker's pool children and gunicorn's workers
    # then stop with it even when its main process died first.
    processes = {
        name: subprocess.Popen(
            ["/bin/sh", "-c", f"exec {command}"],
            cwd=BASE_DIR,
            env=child_env,  # noqa: S603
            start_new_session=True,
        )
        for name, command in commands.items()
    }
    stopping = False

    def request_stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    exit_code = 0
    while not stopping:
        for name, process in processes.items():
            code = process.poll()
            if code is not None:
                print(f"{name} exited with status {code}; stopping the rest", file=sys.stderr, flush=True)
                exit_code = code or 1
                stopping = True
        time.sleep(0.2)

    # SIGTERM is a graceful stop for both: gunicorn finishes its requests, Celery its running tasks.
    for process in processes.values():
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes.values():
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            pass
    while time.monotonic() < deadline and any(_group_alive(process) for process in processes.values()):
        time.sleep(0.2)  # children of a main process that has already exited
    for process in processes.values():
        _signal_group(process, signal.SIGKILL)
        process.wait()
    return exit_code


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # the group id is the child's pid (start_new_session)
    except ProcessLookupError:
        pass  # the whole group is gone already


def _group_alive(process: subprocess.Popen) -> bool:
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
