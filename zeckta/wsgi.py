import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zeckta.settings")

django_application = get_wsgi_application()

# After Django is set up: both read settings.
from zeckta.api.middleware import envelope_on_worker_abort  # noqa: E402
from zeckta.health import liveness_first  # noqa: E402

# GET /healthz never enters Django's request handling, which may test a database connection first; a /v1/
# request that gunicorn aborts at its worker timeout still gets the envelope.
application = liveness_first(envelope_on_worker_abort(django_application))
