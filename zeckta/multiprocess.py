"""Where the Prometheus metrics of the processes of one machine meet (prometheus_client's multiprocess mode).

Each process group, a gunicorn master with its workers or a Celery worker with its pool, writes into a
directory of its own under METRICS_DIR, named `<role>-<pid>@<host>` after the group's first process. That
process sets it up before any child starts (gunicorn.conf.py; the Celery worker's `celeryd_init` signal,
zeckta.taskcontext): it deletes the directories of this host's groups whose first process is gone (a
previous run, whose counters would otherwise be added in) and starts its own empty. A scrape reads the
files of every group (`group_files`), so /metrics, served by any gunicorn worker, adds up the web workers
and the Celery processes. One directory per group, not one for all: the web and the worker are started
and restarted independently, and a group starting must not wipe the files of another still running.

Nothing here imports prometheus_client: its multiprocess mode is chosen once per process, when it is first
imported, from PROMETHEUS_MULTIPROC_DIR, which `group_start` sets for the group's children to inherit.
Processes outside a group (manage.py, runserver, the tests' own process) keep the in-process registry.
"""

import hashlib
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

ROOT_VARIABLE = "METRICS_DIR"
CLIENT_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client: one group's own directory


def metrics_root() -> Path:
    """METRICS_DIR, else a directory of this user and this checkout in the system's temporary directory:
    a web and a worker started from the same checkout find the same one without any configuration."""
    configured = os.environ.get(ROOT_VARIABLE)
    if configured:
        return Path(configured)
    checkout = hashlib.sha256(str(Path(__file__).resolve().parent.parent).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"zeckta-metrics-{os.getuid()}-{checkout}"


def group_start(role: str) -> Path:
    """Makes this process the first of a group (`web`, `worker`) and returns the group's directory.

    Called again in the same process (gunicorn re-reads its configuration on SIGHUP), it keeps the
    directory and its counts.
    """
    root = metrics_root()
    _prepare_root(root, configured=bool(os.environ.get(ROOT_VARIABLE)))
    host = socket.gethostname()
    mine = root / f"{role}-{os.getpid()}@{host}"
    if os.environ.get(CLIENT_VARIABLE) == str(mine) and mine.is_dir():
        return mine
    for group in root.iterdir():
        if group != mine and group.is_dir() and _is_dead_group_of(group.name, host):
            shutil.rmtree(group, ignore_errors=True)
    shutil.rmtree(mine, ignore_errors=True)
    mine.mkdir(mode=0o700)
    os.environ[ROOT_VARIABLE] = str(root)
    os.environ[CLIENT_VARIABLE] = str(mine)
    _client_to_files()
    return mine


def group_dir() -> Path | None:
    """This process's group directory, or None outside a group."""
    value = os.environ.get(CLIENT_VARIABLE)
    return Path(value) if value else None


def group_files() -> list[Path]:
    """The metric files of every group under METRICS_DIR, this host's and (on a shared volume) others'."""
    return sorted(metrics_root().glob("*/*.db"))


def process_exited(pid: int) -> None:
    """Bookkeeping for a child of this group that exited (gunicorn's child_exit, a Celery pool process).

    Its counters stay (they are part of the totals); only the gauges that count live processes go.
    """
    directory = group_dir()
    if directory is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(directory))


def _client_to_files() -> None:
    """Switches prometheus_client to this group's files if it was imported before the group started.

    A Celery worker sets Django up (its apps, so zeckta.metrics) before `celeryd_init`. No metric value exists
    yet: every metric of zeckta.metrics has labels, and a labelled value is made at its first use, with the
    class `values.ValueClass` names then.
    """
    if "prometheus_client.values" not in sys.modules:
        return  # it will read PROMETHEUS_MULTIPROC_DIR when first imported
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.get_value_class()


def _prepare_root(root: Path, *, configured: bool) -> None:
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if configured:
        return
    # The default lives in a directory every local user can write to: refuse one someone else made.
    status = root.lstat()
    if root.is_symlink() or status.st_uid != os.getuid():
        raise RuntimeError(f"{root} belongs to another user: set METRICS_DIR to a directory of this service's own")


def _is_dead_group_of(name: str, host: str) -> bool:
    """Whether `name` is a group of `host` whose first process no longer runs."""
    prefix, _, group_host = name.partition("@")
    _, _, pid = prefix.rpartition("-")
    if group_host != host or not pid.isdigit():
        return False  # another machine's (a shared volume), or not ours at all
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, under another user
    return False
