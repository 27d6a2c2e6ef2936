from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView

from zeckta.api.responses import json_error_response


@csrf_exempt  # API clients send no CSRF token; an unknown route must answer 404, not a CSRF 403
def api_not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    """Unknown routes under /v1/ answer in the envelope, whatever DEBUG says."""
    return json_error_response(status=404, message="The requested resource was not found.", code="NOT_FOUND")


urlpatterns = [
    path("v1/messaging/", include("otp.urls")),
    path("v1/messaging/", include("senders.urls")),
    path("v1/messaging/", include("webhooks.urls")),
    path("v1/messaging/", include("fraud.urls")),
    path("v1/messaging/", include("relay.urls")),
    path("v1/webhooks/", include("otp.receipt_urls")),
    path("hooks/", include("relay.hook_urls")),
    re_path(r"^v1/(?P<rest>[\s\S]*)$", api_not_found),  # any character, newlines included
    path("v2/", include("twilioverify.urls")),  # the Twilio Verify door (API.md section 14)
    path("openapi.json", SpectacularJSONAPIView.as_view(), name="openapi-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="openapi-schema"), name="api-docs"),
    path(settings.ADMIN_URL, admin.site.urls),
]
