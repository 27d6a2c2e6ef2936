"""The functions of each day (otp.day_functions): `otp_request_pYYYYMMDD()` and `otp_verify_pYYYYMMDD()`, made
from the installed `otp_request()` and `otp_verify()` with the day's partitions named, for every day whose
partitions exist (none on plain tables). Beat keeps them with the partitions from then on; a later migration
that changes a function of otp/sql/ runs the same sync after it.
"""

from django.db import migrations


def sync(apps, schema_editor) -> None:
    from otp.day_functions import day_functions_sync

    day_functions_sync()


def drop(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT proname FROM pg_proc WHERE proname ~ '^otp_(request|verify)_p[0-9]{8}$'")
        for (name,) in cursor.fetchall():
            cursor.execute(f"DROP FUNCTION {name}")


class Migration(migrations.Migration):
    dependencies = [("otp", "0022_reuse_reads_without_row_lock")]

    operations = [migrations.RunPython(sync, drop, elidable=False)]
