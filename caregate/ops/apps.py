from django.apps import AppConfig

from caregate.ops.metrics import allowed_networks


class OpsConfig(AppConfig):
    name = "caregate.ops"
    label = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        # A mistyped CAREGATE_METRICS_ALLOWED_IPS stops start-up, not the first scrape.
        allowed_networks()
