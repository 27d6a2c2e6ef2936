"""What a database connection costs a request: kept (CONN_MAX_AGE), pooled (DATABASE_POOL_MAX_SIZE) or new.

    DATABASE_URL=postgres://... python bench/connections.py kept|pooled|new

Runs 3 rounds of 3,000 request cycles in one process, each as Django brackets a request (close_old_connections
before and after) around one `SELECT 1`, and prints the microseconds per cycle. docs/operations.md
(PostgreSQL at scale, Connections) has this machine's numbers.
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
CYCLES = 3000

if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "kept"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zeckta.settings_test")
    if mode == "pooled":
        os.environ["DATABASE_POOL_MAX_SIZE"] = "2"
    elif mode == "new":
        os.environ["CONN_MAX_AGE"] = "0"
    import django

    django.setup()
    from django.db import close_old_connections, connection

    rounds = []
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(CYCLES):
            close_old_connections()  # request_started
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            close_old_connections()  # request_finished
        rounds.append((time.perf_counter() - started) / CYCLES * 1e6)
    print(f"{mode}: " + ", ".join(f"{value:.0f}" for value in rounds) + " us per request cycle")
