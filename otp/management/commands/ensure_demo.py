"""`manage.py ensure_demo`: the demo workspace `make run` prints a working API key and curl for.

In `otp`, the top app: the demo spans workspaces, sender names and the OTP endpoints it prints.
"""

import json
import shlex
from argparse import ArgumentParser

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from senders.models import SenderName
from senders.services import sender_name_approve, sender_name_create
from workspaces.models import ApiKey, Workspace
from workspaces.services import api_key_issue, api_key_revoke, workspace_create
from zeckta.errors import ApplicationError

DEMO_SLUG = "demo"
DEMO_NAME = "Demo"
DEMO_SENDER = "ZECKTA"
DEMO_KEY_NAME = "demo"
DEMO_DEST = "+233202007745"  # a valid Ghanaian mobile number
ACTOR = "command:ensure_demo"  # who the audit trail says made the demo's changes


class Command(BaseCommand):
    help = (
        "Make sure the demo workspace (slug demo), its APPROVED sender ZECKTA and an API key exist, then print "
        "the key and a ready curl. Only a key's digest is stored, so a fresh key labelled 'demo' is issued on "
        "every run and the older 'demo' keys are revoked (--keep-old-keys keeps them). For development only."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="Where the API is served.")
        parser.add_argument("--dest", default=DEMO_DEST, help="Destination used in the printed curl (E.164).")
        parser.add_argument("--keep-old-keys", action="store_true", help="Do not revoke earlier demo keys.")

    def handle(self, *args, **options) -> None:
        try:
            with transaction.atomic():
                workspace = _demo_workspace()
                sender = _demo_sender(workspace)
                revoked = [] if options["keep_old_keys"] else _revoke_demo_keys(workspace)
                issued = api_key_issue(workspace=workspace, name=DEMO_KEY_NAME, actor=ACTOR)
        except ApplicationError as exc:
            raise CommandError(" ".join(exc.message.split())) from None
        if not workspace.is_active:
            self.stderr.write(
                "warning: the demo workspace is suspended; every call will get 403 until an admin reactivates it"
            )

        base_url = options["base_url"].rstrip("/")
        auth = f"Authorization: Bearer {issued.raw_key}"
        request_body = json.dumps({"dest": options["dest"], "src": sender.name, "purpose": "LOGIN"})
        verify_body = json.dumps({"sessionId": "SESSION_ID", "code": "CODE"})
        request_curl = _curl("POST", f"{base_url}/v1/messaging/otp/request", auth, request_body)
        verify_curl = _curl("POST", f"{base_url}/v1/messaging/otp/verify", auth, verify_body)
        status_curl = _curl("GET", f"{base_url}/v1/messaging/otp/SESSION_ID", auth, None)

        write = self.stdout.write
        write(
            f"Demo workspace {workspace.slug!r}: sender {sender.name} {sender.status}, "
            f"{len(revoked)} older demo key(s) revoked."
        )
        write("")
        write("Request an OTP (the SMS with the code is printed on the server console):")
        write(f"  {request_curl}")
        write("Verify it (SESSION_ID from the answer, CODE from the SMS):")
        write(f"  {verify_curl}")
        write("Look at the session:")
        write(f"  {status_curl}")
        write("")
        write(f"Demo API key {issued.api_key.prefix} (shown this once; `make run` issues a new one each time):")
        write(issued.raw_key)


def _demo_workspace() -> Workspace:
    workspace = Workspace.objects.filter(slug=DEMO_SLUG).first()
    if workspace is None:
        workspace = workspace_create(name=DEMO_NAME, slug=DEMO_SLUG, actor=ACTOR)
    return workspace


def _demo_sender(workspace: Workspace) -> SenderName:
    sender = SenderName.objects.filter(workspace=workspace, name=DEMO_SENDER).first()
    if sender is None:
        return sender_name_create(workspace=workspace, name=DEMO_SENDER, approve=True, actor=ACTOR)
    if sender.status != SenderName.Status.APPROVED:
        sender = sender_name_approve(sender_name=sender, actor=ACTOR)
    return sender


def _revoke_demo_keys(workspace: Workspace) -> list[ApiKey]:
    live = ApiKey.objects.filter(workspace=workspace, name=DEMO_KEY_NAME, revoked_at__isnull=True)
    return [api_key_revoke(prefix=prefix, actor=ACTOR) for prefix in live.values_list("prefix", flat=True)]


def _curl(method: str, url: str, auth_header: str, body: str | None) -> str:
    parts = ["curl", "-sS", "-X", method, url, "-H", auth_header]
    if body is not None:
        parts += ["-H", "Content-Type: application/json", "-d", body]
    return shlex.join(parts)
