"""LOG_FORMAT and the JSON lines, and how process groups share METRICS_DIR (zeckta.multiprocess).

Each case runs in a process of its own: both decide things once per process (the logging configuration,
prometheus_client's multiprocess mode).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from zeckta.api.logging import redact


def python(script: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **{k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "LOG_FORMAT")},
            "DJANGO_SETTINGS_MODULE": "zeckta.settings",
            "SECRET_KEY": "s" * 50,
            "OTP_HASH_KEY": "h" * 50,
            "ALLOWED_HOSTS": "localhost",
            **env,
        },
    )


LOG_A_LINE = (
    "import django, logging; django.setup(); from zeckta.api.context import request_id_var; "
    "request_id_var.set('4f0e8a52-2b1d-4a8e-8f3c-9d7e6c5b4a32'); "
    "logging.getLogger('otp.delivery').warning('key %s', 'zk_live_ABCDEFGHijklmnopqrstuvwxyz0123456789')"
)


def test_logs_are_json_lines_by_default_with_debug_off():
    result = python(LOG_A_LINE, DEBUG="False")
    [line] = result.stderr.splitlines()
    logged = json.loads(line)
    assert logged["level"] == "WARNING" and logged["logger"] == "otp.delivery"
    assert logged["requestId"] == "4f0e8a52-2b1d-4a8e-8f3c-9d7e6c5b4a32"
    assert logged["time"].endswith("Z") and logged["time"][10] == "T"
    assert logged["message"] == "key zk_live_ABCDEFGH…"  # a raw key is cut to its display prefix


def test_logs_are_text_with_debug_on_or_when_asked():
    for env in ({"DEBUG": "True"}, {"DEBUG": "False", "LOG_FORMAT": "text"}):
        result = python(LOG_A_LINE, **env)
        [line] = result.stderr.splitlines()
        assert " WARNING otp.delivery [requestId=4f0e8a52-2b1d-4a8e-8f3c-9d7e6c5b4a32] key " in line, env


def test_an_unknown_log_format_is_refused():
    result = python("import django; django.setup()", LOG_FORMAT="xml")
    assert result.returncode != 0 and "LOG_FORMAT must be json or text" in result.stderr


def test_keys_and_webhook_secrets_are_redacted_wherever_they_turn_up():
    assert redact("Bearer zk_test_abcdefgh12345678901234567890 failed") == "Bearer zk_test_abcdefgh… failed"
    assert redact("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw=") == "secret whsec_…"
    assert redact("prefix zk_live_abcdefgh only") == "prefix zk_live_abcdefgh only"  # a display prefix stays


# --- METRICS_DIR -----------------------------------------------------------------------------------


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


GROUP_START = "from zeckta import multiprocess; print(multiprocess.group_start('web'))"


def test_a_starting_group_wipes_its_hosts_dead_groups_and_keeps_the_living(tmp_path: Path):
    host = socket.gethostname()
    dead = tmp_path / f"web-{dead_pid()}@{host}"
    alive = tmp_path / f"worker-{os.getpid()}@{host}"
    elsewhere = tmp_path / f"web-{dead_pid()}@another-machine"
    for group in (dead, alive, elsewhere):
        group.mkdir()
        (group / "counter_1.db").write_bytes(b"\0" * 8)

    result = python(GROUP_START, METRICS_DIR=str(tmp_path))

    mine = Path(result.stdout.strip())
    assert mine.parent == tmp_path and mine.name.startswith("web-") and mine.name.endswith(f"@{host}")
    assert mine.is_dir() and not any(mine.iterdir())
    assert not dead.exists()
    assert (alive / "counter_1.db").exists() and (elsewhere / "counter_1.db").exists()


def test_a_group_counts_in_its_own_files_even_when_the_client_was_loaded_first(tmp_path: Path):
    # As in a Celery worker: Django (and so zeckta.metrics) is set up before the group starts.
    script = (
        "import django; django.setup(); from zeckta import metrics, multiprocess; "
        "print(multiprocess.group_start('worker')); metrics.OTP_REQUESTS.labels(outcome='new').inc(2); "
        "print(metrics.scrape()[0].decode())"
    )
    first = python(script, METRICS_DIR=str(tmp_path))
    group = Path(first.stdout.splitlines()[0])
    assert [path.name for path in group.iterdir()] == [f"counter_{group.name.split('-')[1].split('@')[0]}.db"]
    assert 'zeckta_otp_requests_total{outcome="new"} 2.0' in first.stdout

    second = python(script, METRICS_DIR=str(tmp_path))
    assert [path.name for path in tmp_path.iterdir()] == [Path(second.stdout.splitlines()[0]).name]
    assert 'zeckta_otp_requests_total{outcome="new"} 2.0' in second.stdout  # the ended run's counts went


def test_the_default_directory_is_refused_when_another_user_made_it(tmp_path: Path):
    if os.getuid() != 0:
        pytest.skip("needs to make a directory owned by someone else")
    script = (
        "import os, tempfile; from zeckta import multiprocess; root = multiprocess.metrics_root(); "
        "os.makedirs(root, exist_ok=True); os.chown(root, 12345, 12345); "
        "\ntry:\n    multiprocess.group_start('web')\nexcept RuntimeError as exc:\n    print('refused', exc)"
        "\nfinally:\n    os.chown(root, 0, 0)"
    )
    result = python(script, TMPDIR=str(tmp_path))
    assert result.stdout.startswith("refused"), result.stdout + result.stderr


def test_gunicorn_marks_a_worker_that_exits_keeping_its_counts(tmp_path: Path):
    script = (
        "import runpy, types; config = runpy.run_path('gunicorn.conf.py'); "
        "from zeckta import multiprocess; group = multiprocess.group_dir(); "
        "[(group / name).write_bytes(b'') for name in ('counter_4242.db', 'gauge_livesum_4242.db')]; "
        "config['child_exit'](None, types.SimpleNamespace(pid=4242)); "
        "print(sorted(path.name for path in group.iterdir()))"
    )
    result = python(script, METRICS_DIR=str(tmp_path))
    assert result.stdout.strip() == "['counter_4242.db']", result.stderr
