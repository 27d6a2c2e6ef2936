"""scripts/test_services.sh, which `make test` and .ci/run call first: it installs what is missing (as root,
with apt-get), starts a local PostgreSQL or Redis that is not answering, and otherwise says in one line why it
cannot. Run here against stand-ins of the system's commands on PATH: the machine's own servers are never
touched (the stand-ins record what would have been run)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

SCRIPT = settings.BASE_DIR / "scripts/test_services.sh"
REAL_TOOLS = ("bash", "ls", "sort", "tail", "seq", "sleep", "sed", "cat", "touch", "cp")

# Each stand-in logs its command line; the servers' "answering" is a file in $STATE.
STUBS = {
    "id": 'echo "$STUB_UID"',
    "apt-get": """echo "apt-get $*" >>"$STATE/log"
case "$*" in *install*) for package in "$@"; do case "$package" in
    chromium) cp "$STUBS/.chromium" "$STUBS/chromium" ;;
    redis-server) cp "$STUBS/.redis-server" "$STUBS/redis-server" ;;
esac; done ;; esac""",
    "pg_isready": '[ -e "$STATE/pg_up" ]',
    "pg_ctlcluster": """echo "pg_ctlcluster $*" >>"$STATE/log"
case "$*" in *status*) [ -e "$STATE/pg_up" ] ;; *start*) touch "$STATE/pg_up" ;; esac""",
    "redis-cli": '[ -e "$STATE/redis_up" ] && echo PONG || true',
    "redis-server": 'echo "redis-server $*" >>"$STATE/log"; touch "$STATE/redis_up"',
    "chromium": "true",
}

pytestmark = pytest.mark.skipif(
    not any(Path("/etc/postgresql").glob("*")), reason="the script reads the PostgreSQL version from /etc/postgresql"
)


def run(
    tmp_path: Path, *, uid: int = 0, missing: tuple[str, ...] = (), up: tuple[str, ...] = ("pg", "redis"), **env: str
) -> tuple[subprocess.CompletedProcess, list[str]]:
    stubs, state = tmp_path / "bin", tmp_path / "state"
    stubs.mkdir()
    state.mkdir()
    for tool in REAL_TOOLS:
        (stubs / tool).symlink_to(shutil.which(tool))
    (stubs / "python3").symlink_to(Path(sys.executable).resolve())  # not a pyenv shim: it needs more on PATH
    for name, body in STUBS.items():
        if name not in missing:
            (stubs / name).write_text(f"#!/bin/sh\n{body}\n")
            (stubs / name).chmod(0o755)
    for name in ("chromium", "redis-server"):  # what apt-get "installs"
        (stubs / f".{name}").write_text(f"#!/bin/sh\n{STUBS[name]}\n")
        (stubs / f".{name}").chmod(0o755)
    for server in up:
        (state / f"{server}_up").touch()
    result = subprocess.run(
        [str(stubs / "bash"), str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": str(stubs),
            "STUBS": str(stubs),
            "STATE": str(state),
            "STUB_UID": str(uid),
            "TEST_SERVICES_WAIT_SECONDS": "2",
            **env,
        },
    )
    log = (state / "log").read_text().splitlines() if (state / "log").exists() else []
    return result, log


def test_with_everything_there_and_answering_it_does_nothing(tmp_path):
    result, log = run(tmp_path)
    assert (result.returncode, result.stdout, result.stderr, log) == (0, "", "", [])


def test_as_root_it_installs_a_missing_chromium_with_apt_get(tmp_path):
    result, log = run(tmp_path, missing=("chromium",))
    assert result.returncode == 0, result.stderr
    assert log == ["apt-get update -qq", "apt-get install -y -qq chromium"]
    assert "installing chromium" in result.stdout


@pytest.mark.parametrize(
    ("uid", "missing", "why"),
    [
        (1000, ("chromium",), "not root"),
        (0, ("chromium", "apt-get"), "no apt-get"),
    ],
)
def test_without_root_or_apt_get_it_says_why_in_one_line_and_fails(tmp_path, uid, missing, why):
    result, log = run(tmp_path, uid=uid, missing=missing)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"test-services: cannot install chromium ({why}): install chromium yourself, or run this as root on Debian"
    ]
    assert log == []


def test_it_starts_a_local_postgresql_and_redis_that_do_not_answer(tmp_path):
    version = sorted(path.name for path in Path("/etc/postgresql").iterdir())[-1]
    result, log = run(tmp_path, up=())
    assert result.returncode == 0, result.stderr
    assert log == [
        f"pg_ctlcluster --skip-systemctl-redirect {version} main status",
        f"pg_ctlcluster --skip-systemctl-redirect {version} main start",
        "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save  --appendonly no",
    ]


def test_as_root_it_installs_a_missing_redis_server_then_starts_it(tmp_path):
    result, log = run(tmp_path, up=("pg",), missing=("redis-server",))
    assert result.returncode == 0, result.stderr
    assert log[:2] == ["apt-get update -qq", "apt-get install -y -qq redis-server"]
    assert log[2].startswith("redis-server --daemonize yes")


def test_it_never_starts_a_server_on_another_machine_and_says_which_did_not_answer(tmp_path):
    result, log = run(tmp_path, up=("redis",), DATABASE_URL="postgres://zeckta@db.internal:6432/zeckta")
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["test-services: PostgreSQL did not answer on db.internal:6432 within 2s"]
    assert log == []


def test_a_local_postgresql_that_is_down_needs_root_to_start(tmp_path):
    result, log = run(tmp_path, uid=1000, up=("redis",))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "test-services: PostgreSQL is not answering on 127.0.0.1:5432 and starting it needs root"
    ]
    assert os.path.exists(SCRIPT) and log == []
