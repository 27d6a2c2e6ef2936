from django.apps import AppConfig


class ZecktaConfig(AppConfig):
    """The project as an app of its own: its system checks register here. It has no models."""

    name = "zeckta"

    def ready(self) -> None:
        import zeckta.checks  # noqa: F401  (deployment checks)
        from zeckta.dbtimeouts import connect_migrate_signals

        connect_migrate_signals()  # `migrate` runs without the statement limit of requests
