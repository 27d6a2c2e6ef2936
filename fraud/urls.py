from django.urls import path

from fraud.apis import FraudBlockViewSet

# `list_page`, not `list`: the answer is one envelope holding a page, not a JSON array.
urlpatterns = [
    path("fraud/blocks", FraudBlockViewSet.as_view({"get": "list_page"}), name="fraud-blocks"),
    # Only UUIDs match: anything else is an unknown route (404), never a lookup.
    path("fraud/blocks/<uuid:block_id>", FraudBlockViewSet.as_view({"delete": "destroy"}), name="fraud-block"),
]
