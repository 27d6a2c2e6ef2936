import uuid

from django.db import models


class SupabaseHook(models.Model):
    """A Supabase Auth Send SMS hook of a workspace (API.md section 14): Supabase posts each login code to
    /hooks/supabase/{public_id}, signed per Standard Webhooks with `secret` (`v1,whsec_<base64>`), which is
    shown once and stored encrypted (relay.hooks.secret_encrypt). Made with a test key, it is a test hook:
    its SMS go to the test inbox, and only test keys see it."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="supabase_hooks")
    encrypted_secret = models.BinaryField(editable=False)
    # `v1,whsec_` and the first characters of the secret: enough to tell two hooks apart in the admin.
    secret_prefix = models.CharField(max_length=24, editable=False)
    is_test = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = "Supabase hook"

    def __str__(self) -> str:
        return f"Supabase hook {self.public_id}"
