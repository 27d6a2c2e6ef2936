from django.urls import path

from webhooks.apis import WebhookEndpointViewSet

# `list_page`, not `list`: the answer is one envelope holding a page, as for sender names.
urlpatterns = [
    path("webhooks", WebhookEndpointViewSet.as_view({"get": "list_page", "post": "create"}), name="webhooks"),
    # Only UUIDs match: anything else is an unknown route (404), never a lookup.
    path(
        "webhooks/<uuid:webhook_id>",
        WebhookEndpointViewSet.as_view({"get": "retrieve", "delete": "destroy"}),
        name="webhook",
    ),
    path(
        "webhooks/<uuid:webhook_id>/rotate-secret",
        WebhookEndpointViewSet.as_view({"post": "rotate_secret"}),
        name="webhook-rotate-secret",
    ),
]
