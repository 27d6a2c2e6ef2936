from django.urls import path

from relay.views import supabase_send_sms

# Outside /v1/: Supabase's caller knows no Bearer key, and reads its own answer shapes.
urlpatterns = [
    path("supabase/<uuid:hook_id>", supabase_send_sms, name="supabase-hook"),
]
