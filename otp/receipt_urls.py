from django.urls import path

from otp.apis import SmsReceiptView

# The providers' delivery receipts (API.md section 11): `route_id` is a route's id, or `default`.
urlpatterns = [
    path("sms/<str:route_id>", SmsReceiptView.as_view(), name="sms-receipt"),
]
