"""requirements.lock and requirements-dev.lock pin every dependency, direct or not, with its hashes, and follow
requirements.txt and requirements-dev.txt: a pin changed or added there without `make lock` fails here, before
`make` would install the old one."""

import re

from django.conf import settings

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def pins(filename: str) -> dict[str, str]:
    """name -> version of each `name==version` line (requirements syntax; -r lines and comments skipped)."""
    found = {}
    for line in (settings.BASE_DIR / filename).read_text(encoding="utf-8").splitlines():
        match = PIN.match(line.strip())
        if match:
            found[normalized(match.group(1))] = match.group(2)
    return found


def hashed_entries(filename: str) -> dict[str, int]:
    """name -> how many --hash options follow its pin in a lock file."""
    counts: dict[str, int] = {}
    current = None
    for line in (settings.BASE_DIR / filename).read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            current = normalized(match.group(1))
            counts[current] = 0
        elif current and line.strip().startswith("--hash=sha256:"):
            counts[current] += 1
    return counts


def test_each_direct_requirement_is_locked_at_its_own_version():
    runtime, dev = pins("requirements.txt"), pins("requirements-dev.txt")
    runtime_lock, dev_lock = pins("requirements.lock"), pins("requirements-dev.lock")
    assert {name: runtime_lock.get(name) for name in runtime} == runtime, "run `make lock`"
    assert {name: dev_lock.get(name) for name in {**runtime, **dev}} == {**runtime, **dev}, "run `make lock`"


def test_every_locked_dependency_has_hashes_and_both_locks_agree():
    for lock in ("requirements.lock", "requirements-dev.lock"):
        entries = hashed_entries(lock)
        assert len(entries) > 20  # the transitive dependencies are there, not only the direct ones
        assert [name for name, hashes in entries.items() if hashes == 0] == [], lock
    runtime_lock, dev_lock = pins("requirements.lock"), pins("requirements-dev.lock")
    assert {name: dev_lock.get(name) for name in runtime_lock} == runtime_lock  # the dev lock holds the runtime one
