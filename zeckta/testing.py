"""Helpers shared by the test suites of every app."""

import threading
from collections.abc import Callable

from django.db import connection


def run_together(count: int, action: Callable[[int], object]) -> list:
    """Runs action(i) in `count` threads released at the same moment by a Barrier; returns the results.

    Each thread has its own database connection (Django's are per thread) and closes it at the end.
    A thread that raises fails the caller, so a race cannot hide behind a swallowed exception.
    """
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = action(index)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results
