import uuid

from otp.errors import OtpSessionNotFound
from otp.models import OtpSession
from workspaces.models import Workspace


def otp_session_get(*, workspace: Workspace, session_id: uuid.UUID) -> OtpSession:
    """The workspace's session with its SMS; another workspace's session is simply not found."""
    session = OtpSession.objects.select_related("sms").filter(workspace=workspace, public_id=session_id).first()
    if session is None:
        raise OtpSessionNotFound()
    return session
