"""Creates the PostgreSQL database named by DATABASE_URL when it does not exist yet.

Does nothing for SQLite or when the database is already there. Connects to the server's `postgres`
maintenance database with the same credentials to run CREATE DATABASE.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zeckta.settings")


def main() -> int:
    import django
    from django.conf import settings

    django.setup()
    db = settings.DATABASES["default"]
    if "postgresql" not in db["ENGINE"]:
        return 0

    import psycopg
    from psycopg import sql

    params = {
        "host": db.get("HOST") or None,
        "port": db.get("PORT") or None,
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "connect_timeout": 5,
    }
    params = {key: value for key, value in params.items() if value is not None}
    try:
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
                print(f"created database {db['NAME']}")
    except psycopg.Error as exc:
        print(f"ensure_database: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
