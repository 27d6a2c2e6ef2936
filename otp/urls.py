from django.urls import path

from otp.apis import OtpViewSet, TestInboxViewSet

urlpatterns = [
    path("otp/request", OtpViewSet.as_view({"post": "request_otp"}), name="otp-request"),
    path("otp/verify", OtpViewSet.as_view({"post": "verify"}), name="otp-verify"),
    # Only UUIDs match: anything else is an unknown route (404), never a lookup.
    path("otp/<uuid:session_id>", OtpViewSet.as_view({"get": "retrieve"}), name="otp-session"),
    path("otp/<uuid:session_id>/resend", OtpViewSet.as_view({"post": "resend"}), name="otp-resend"),
    path("otp/<uuid:session_id>/cancel", OtpViewSet.as_view({"post": "cancel"}), name="otp-cancel"),
    # `inbox`, not `list`: the answer is one envelope holding the messages, not a JSON array.
    path("test-inbox", TestInboxViewSet.as_view({"get": "inbox"}), name="test-inbox"),
]
