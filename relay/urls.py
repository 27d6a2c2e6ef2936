from django.urls import path

from relay.apis import RelayViewSet, SupabaseHookViewSet

urlpatterns = [
    path("sms", RelayViewSet.as_view({"post": "send"}), name="sms-relay"),
    # Only UUIDs match: anything else is an unknown route (404), never a lookup.
    path("sms/<uuid:message_id>", RelayViewSet.as_view({"get": "retrieve"}), name="sms-relayed"),
    path("hooks/supabase", SupabaseHookViewSet.as_view({"get": "list_hooks", "post": "create"}), name="supabase-hooks"),
    path(
        "hooks/supabase/<uuid:hook_id>",
        SupabaseHookViewSet.as_view({"get": "retrieve", "delete": "destroy"}),
        name="supabase-hook-manage",
    ),
]
