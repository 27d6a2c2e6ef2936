"""Which channel a send of a session goes by, and what it costs (API.md section 15).

The first send takes the request's `channel`, else the first channel of the workspace's fallback order
that can reach the number; each fallback (otp.fallback) the next one of the order not yet tried. Which
channels can reach a country is `senders.routes.channels_available`'s (one home).
"""

from collections.abc import Collection

from senders.routes import channel_reaches, channels_available
from workspaces.models import Workspace
from zeckta.channels import Channel
from zeckta.errors import ValidationFailed


def first_channel(*, workspace: Workspace, country: str, requested: str | None) -> str:
    """The channel of a session's first send (or of a resend that names one). A requested channel with
    no route for the country is a validation error on `channel`. Without one: the first of the order that
    reaches the country; SMS when none does (its default route serves every country).

    An SMS-only workspace asks no route list: the request path keeps its statements."""
    if requested is not None:
        if not channel_reaches(requested, country):
            raise ValidationFailed.for_field("channel", f"No {requested} route serves this number's country.")
        return requested
    order = workspace.channels or [Channel.SMS]
    if order[0] == Channel.SMS:
        return Channel.SMS
    available = channels_available(workspace, country)
    return available[0] if available else Channel.SMS


def may_fall_back(*, workspace: Workspace, tried: Collection[str]) -> bool:
    """Whether the order holds a channel not yet tried: then the send gets a fallback due time. Whether a
    route reaches it is asked only when it is due (otp.fallback), off the request path."""
    return any(channel not in tried for channel in workspace.channels)


def next_channel(*, workspace: Workspace, country: str, tried: Collection[str]) -> str | None:
    """The next channel of the order not yet tried for the session that reaches its country, or None."""
    return next((channel for channel in channels_available(workspace, country) if channel not in tried), None)


def units_for(*, workspace: Workspace, channel: str, segments: int) -> int:
    """What one send costs: per SMS segment, per WhatsApp message, per call (the workspace's prices)."""
    if channel == Channel.WHATSAPP:
        return workspace.units_per_whatsapp_message
    if channel == Channel.VOICE:
        return workspace.units_per_call
    return segments * workspace.units_per_sms_segment
