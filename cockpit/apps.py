from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class CockpitConfig(AppConfig):
    """The operators' cockpit: the dashboard on the admin index (kept cheap by an hourly rollup of the OTP
    traffic, rebuilt by beat), the operator guide, and the admin's branding. The top layer: it reads every app."""

    default = True
    name = "cockpit"
    verbose_name = "Cockpit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import cockpit.tasks  # noqa: F401  (registers the rollup task in every process)


class ZecktaAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with the Zeckta site (branding, dashboard, guide) as `admin.site`: it stands in
    INSTALLED_APPS where "django.contrib.admin" stood."""

    # CockpitConfig is this module's default app; this one is named in full in INSTALLED_APPS. (AdminConfig is
    # imported through its module: a class imported by name would count as this module's own.)
    default = False
    default_site = "cockpit.sites.ZecktaAdminSite"
