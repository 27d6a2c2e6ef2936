from django.urls import path

from relay.apis import RelayViewSet

urlpatterns = [
    path("sms", RelayViewSet.as_view({"post": "send"}), name="sms-relay"),
    # Only UUIDs match: anything else is an unknown route (404), never a lookup.
    path("sms/<uuid:message_id>", RelayViewSet.as_view({"get": "retrieve"}), name="sms-relayed"),
]
