"""The PL/pgSQL functions have one home, otp/sql/: the newest migration installs exactly that text.

Migrations are frozen (a fresh database replays each one as it was written), so each holds its own copy;
these tests tie the newest copy to the file, and the installed function to both.
"""

import re
from importlib import import_module
from pathlib import Path

import pytest
from django.db import connection

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
MIGRATIONS_DIR = SQL_DIR.parent / "migrations"
SQL_FILES = sorted(SQL_DIR.glob("*.sql"))


def newest_copy(function: str) -> tuple[str, str]:
    """(migration name, text) of the newest otp migration holding a copy of `function`, as the constant
    named after it (OTP_REQUEST for otp_request)."""
    for path in sorted(MIGRATIONS_DIR.glob("[0-9]*.py"), reverse=True):
        module = import_module(f"otp.migrations.{path.stem}")
        if hasattr(module, function.upper()):
            return path.stem, getattr(module, function.upper())
    raise AssertionError(f"no migration installs {function}")


def body(text: str) -> str:
    """What PostgreSQL stores as the function's source: the text between the $$ quotes."""
    return re.search(r"\$\$(.*)\$\$", text, re.DOTALL).group(1)


def test_there_is_a_file_per_function():
    assert [path.name for path in SQL_FILES] == ["otp_request.sql", "otp_verify.sql"]


@pytest.mark.parametrize("path", SQL_FILES, ids=lambda path: path.stem)
def test_the_newest_migration_installs_exactly_the_file(path):
    migration, copy = newest_copy(path.stem)
    assert copy.strip() == path.read_text().strip(), (
        f"otp/sql/{path.name} changed after migration {migration} copied it: add a migration with the new text"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("path", SQL_FILES, ids=lambda path: path.stem)
def test_the_database_runs_the_file(path):
    with connection.cursor() as cursor:
        cursor.execute("SELECT prosrc FROM pg_proc WHERE proname = %s", [path.stem])
        installed = [row[0] for row in cursor.fetchall()]
    assert installed == [body(path.read_text())]  # one function, no overload left beside it
