"""The Procfile is what `make run` starts (scripts/serve.py): web alone without a broker, web, worker and beat
with one; Ctrl-C stops them all."""

import importlib.util
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from otp.tests.processes import RedisServer, serves_http
from zeckta.testing import free_port, wait_for

BASE_DIR = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_the_procfile_names_web_worker_and_beat_and_serve_reads_each_line():
    spec = importlib.util.spec_from_file_location("serve", BASE_DIR / "scripts/serve.py")
    serve_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serve_script)
    commands = serve_script.procfile()
    assert list(commands) == ["web", "worker", "webhooks", "beat"]
    assert commands["web"].startswith("gunicorn zeckta.wsgi ")
    assert commands["beat"].startswith("celery -A zeckta beat")
    lines = [line for line in (BASE_DIR / "Procfile").read_text().splitlines() if line and not line.startswith("#")]
    assert len(lines) == len(commands)  # no line it would skip


def serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL", "DATABASE_URL")}
    process = subprocess.Popen(
        [sys.executable, "scripts/serve.py"],
        cwd=BASE_DIR,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env={**clean, "BIND": f"127.0.0.1:{port}", "PYTHONPATH": str(BASE_DIR), **env},
        start_new_session=True,
    )
    return process, port


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)  # Ctrl-C
    try:
        return process.wait(timeout=40)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.django_db(transaction=True)
def test_with_a_broker_serve_runs_web_worker_and_beat_and_ctrl_c_stops_them(tmp_path):
    redis_server = RedisServer()
    redis_server.start()
    db = settings.DATABASES["default"]
    log = tmp_path / "serve.log"
    process, port = serve(
        {
            "DJANGO_SETTINGS_MODULE": "zeckta.settings_test",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "REDIS_URL": redis_server.url,
        },
        log,
    )
    try:
        assert wait_for(lambda: serves_http(port), timeout=60), log.read_text()
        assert wait_for(
            lambda: log.read_text().count(" ready.") == 2 and "took the beat lock" in log.read_text(), timeout=60
        ), log.read_text()
        assert stop(process) == 0, log.read_text()
        assert not serves_http(port)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        redis_server.cleanup()
    output = log.read_text()
    assert "tasks: Celery worker and beat on" in output
    # Two workers: SMS (and housekeeping) apart from webhooks, so that a slow receiver never holds an SMS.
    assert re.search(r"worker@\S+ ready\.", output) and re.search(r"webhooks@\S+ ready\.", output), output
    assert ".> sms " in output and ".> webhooks " in output
    assert "Booting worker" in output  # gunicorn's web workers


def test_without_a_broker_serve_runs_the_web_process_alone(tmp_path):
    log = tmp_path / "serve.log"
    process, port = serve(
        {
            "DJANGO_SETTINGS_MODULE": "zeckta.settings",
            "DEBUG": "True",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'embedded.sqlite3'}",
            "SMS_BACKEND": "console",
        },
        log,
    )
    try:
        assert wait_for(lambda: serves_http(port), timeout=60), log.read_text()
        assert stop(process) == 0, log.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    output = log.read_text()
    assert "tasks: in-process" in output
    assert "celery@" not in output and "beat:" not in output  # no worker, no beat
    assert "Using worker: gthread" in output  # one gunicorn worker with threads (GUNICORN_THREADS=4)
