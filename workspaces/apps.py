from django.apps import AppConfig


class WorkspacesConfig(AppConfig):
    name = "workspaces"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the OpenAPI description of the Bearer API-key scheme with drf-spectacular.
        import workspaces.schema  # noqa: F401
        from workspaces.models import ApiKey, Workspace
        from zeckta.localcache import forget_on_save

        forget_on_save(ApiKey, Workspace)
