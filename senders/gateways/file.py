import json
import threading

from django.conf import settings

from senders.gateways.base import GatewayResult, OutgoingSms, SmsGateway

_lock = threading.Lock()


class FileGateway(SmsGateway):
    """Appends each SMS as one JSON line to settings.SMS_FILE_PATH (for staging and demos)."""

    optional_settings = ("path",)
    development_only = True

    def send(self, message: OutgoingSms) -> GatewayResult:
        line = json.dumps({"to": message.to, "from": message.src, "text": message.text, "reference": message.reference})
        path = self.config.get("path") or settings.SMS_FILE_PATH
        with _lock, open(path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        return GatewayResult(provider_message_id=f"file-{message.reference}")
