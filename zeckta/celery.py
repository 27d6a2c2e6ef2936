import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zeckta.settings")

app = Celery("zeckta")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Signal handlers: the request's context in tasks, the service's logging, the worker's metrics directory;
# the longer statement limit of housekeeping tasks.
import zeckta.dbtimeouts  # noqa: E402,F401
import zeckta.taskcontext  # noqa: E402,F401
