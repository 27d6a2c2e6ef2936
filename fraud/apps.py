from django.apps import AppConfig


class FraudConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "fraud"
    verbose_name = "Fraud guard"

    def ready(self) -> None:
        from fraud.models import FraudBlock, SafeListEntry
        from zeckta import metrics
        from zeckta.localcache import forget_on_save

        # The per-process copy of each workspace's safe list (fraud.selectors): an entry saved or deleted as
        # an instance (the admin's inline) reaches this process's requests at once.
        forget_on_save(SafeListEntry)
        # Every rule in every mode at 0 from the first scrape.
        metrics.known_label_values(metrics.FRAUD_DECISIONS, rule=FraudBlock.Rule.values, mode=FraudBlock.Mode.values)
