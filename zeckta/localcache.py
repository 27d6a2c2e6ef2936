"""Per-process caches of the reads every API call makes (the API key with its workspace, the sender name).

Each entry is trusted for at most settings.LOCAL_CACHE_SECONDS (1 s by default), so a change made
anywhere (another web process, the admin, a management command) reaches every process within that time:
revoking a key or suspending a workspace takes effect within a second everywhere. A change made through
the services in this process clears the caches at once (`local_caches_clear`).

Why not Redis or Django's cache framework: a shared cache costs a network round trip, as much as the
indexed SELECT it would save. An in-process dict costs nothing, and a second of staleness is the price.
"""

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from django.conf import settings
from django.db import transaction

V = TypeVar("V")

_registry: list["LocalCache | LocalMarks"] = []


class LocalCache(Generic[V]):
    """A bounded map of loaded values, each kept for LOCAL_CACHE_SECONDS. Values are shared between the
    threads of a process: callers that hand them on copy them first."""

    def __init__(self, name: str, *, max_entries: int = 10_000) -> None:
        self.name = name
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._lock = threading.Lock()
        _registry.append(self)

    def get(self, key: Hashable, load: Callable[[], V]) -> V:
        ttl = settings.LOCAL_CACHE_SECONDS
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and now - entry[0] < ttl:
            return entry[1]
        value = load()
        if ttl > 0:
            with self._lock:
                if len(self._entries) >= self.max_entries:
                    # Many distinct keys in one second (a scan of made-up API keys, say): start afresh
                    # rather than grow without bound.
                    self._entries.clear()
                self._entries[key] = (now, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class LocalMarks:
    """A bounded map of marks that each hold until a deadline their writer chose (unix ms), not for
    LOCAL_CACHE_SECONDS: what this process learnt from a shared store and may trust until then (the fraud
    guard's numbers it saw counted, say). Forgotten with the caches (`local_caches_clear`)."""

    def __init__(self, name: str, *, max_entries: int = 100_000) -> None:
        self.name = name
        self.max_entries = max_entries
        self._marks: dict[Hashable, int] = {}
        self._lock = threading.Lock()
        _registry.append(self)

    def holds(self, key: Hashable, now_ms: int) -> bool:
        until = self._marks.get(key)
        return until is not None and until > now_ms

    def put(self, key: Hashable, until_ms: int) -> None:
        with self._lock:
            if len(self._marks) >= self.max_entries:
                self._marks.clear()  # a mark only saves a round trip: starting afresh loses nothing else
            self._marks[key] = until_ms

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self._marks.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._marks.clear()


def local_caches_clear() -> None:
    """Forgets every cached read of this process."""
    for cache in _registry:
        cache.clear()


def forget_on_save(*models: type) -> None:
    """Clears the caches whenever one of `models` is saved or deleted as an instance (the admin's forms,
    tests); the services that write with a conditional UPDATE call local_caches_changed themselves."""
    from django.db.models.signals import post_delete, post_save

    for model in models:
        post_save.connect(_on_change, sender=model, dispatch_uid=f"localcache-save-{model.__name__}")
        post_delete.connect(_on_change, sender=model, dispatch_uid=f"localcache-delete-{model.__name__}")


def _on_change(**kwargs: object) -> None:
    local_caches_changed()


def local_caches_changed() -> None:
    """Called by the services that change a cached row: this process sees the change at once. Cleared
    now and again after commit, so a read between the two cannot keep the old row for a second."""
    local_caches_clear()
    transaction.on_commit(local_caches_clear)
