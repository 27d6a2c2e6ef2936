import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zeckta.settings")

django_application = get_wsgi_application()

from zeckta.health import liveness_first  # noqa: E402  (after Django is set up: it reads settings)

# GET /healthz never enters Django's request handling, which may test a database connection first.
application = liveness_first(django_application)
