"""DATABASE_POOL_MAX_SIZE turns on psycopg's pool (Django's `OPTIONS["pool"]`), for threaded processes: off by
default, since a sync gunicorn worker already keeps its one connection (docs/operations.md, PostgreSQL)."""

import json
import os
import subprocess
import sys

from django.conf import settings

SCRIPT = r"""
import json, threading
import django
django.setup()
from django.db import connection, connections

def query(results):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.2), 1")
        results.append(cursor.fetchone()[1])
    connections.close_all()  # back to the pool, as at the end of a request

results = []
threads = [threading.Thread(target=query, args=(results,)) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
pool = connection.pool
print(json.dumps({"pool": pool is not None, "results": results, "max_size": pool.max_size if pool else None,
                  "opened": pool.get_stats().get("connections_num") if pool else None,
                  "conn_max_age": connection.settings_dict["CONN_MAX_AGE"]}))
"""


def run(**env: str) -> dict:
    db = settings.DATABASES["default"]
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "PYTHONPATH": str(settings.BASE_DIR),
            "DJANGO_SETTINGS_MODULE": "zeckta.settings_test",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            **env,
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_without_the_setting_there_is_no_pool_and_connections_persist():
    out = run()
    assert out["pool"] is False and out["conn_max_age"] == 60 and out["results"] == [1, 1, 1, 1]


def test_with_it_threads_share_at_most_that_many_connections():
    out = run(DATABASE_POOL_MAX_SIZE="2")
    assert out["pool"] is True and out["max_size"] == 2
    assert out["results"] == [1, 1, 1, 1]  # four threads, each waited for one of the two connections
    assert out["opened"] <= 2
    assert out["conn_max_age"] == 0  # the pool keeps the connections, not Django
