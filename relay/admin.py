"""Supabase hooks, for staff to look up: read-only (workspaces make and delete them through the API), and
never the secret, only its prefix to tell two apart."""

from django.contrib import admin

from otp.admin import ReadOnlyAdmin
from relay.models import SupabaseHook


@admin.register(SupabaseHook)
class SupabaseHookAdmin(ReadOnlyAdmin):
    list_display = ["public_id", "workspace", "is_test", "secret_prefix", "created_at"]
    list_filter = ["is_test", "workspace"]
    fields = ("public_id", "workspace", "is_test", "secret_prefix", "created_at")
    readonly_fields = fields
    exclude = ["encrypted_secret"]
