from django.urls import path, re_path

from twilioverify.apis import VerificationCheckView, VerificationsView, VerificationView, unknown_route

# Twilio's paths, as its SDKs build them (no trailing slash, no .json); mounted at /v2/.
urlpatterns = [
    path("Services/<str:service_sid>/Verifications", VerificationsView.as_view(), name="twilio-verifications"),
    path(
        "Services/<str:service_sid>/Verifications/<str:sid>",
        VerificationView.as_view(),
        name="twilio-verification",
    ),
    path(
        "Services/<str:service_sid>/VerificationCheck",
        VerificationCheckView.as_view(),
        name="twilio-verification-check",
    ),
    re_path(r"^(?P<rest>[\s\S]*)$", unknown_route),
]
