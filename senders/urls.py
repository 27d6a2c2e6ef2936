from django.urls import path

from senders.apis import SenderNameViewSet

# `list_page`, not `list`: the answer is one envelope holding a page, not a JSON array.
urlpatterns = [
    path("sender-names", SenderNameViewSet.as_view({"get": "list_page", "post": "create"}), name="sender-names"),
    # Only UUIDs match: anything else is an unknown route (404), never a lookup.
    path(
        "sender-names/<uuid:sender_name_id>",
        SenderNameViewSet.as_view({"get": "retrieve", "put": "update", "delete": "destroy"}),
        name="sender-name",
    ),
]
