"""Which phone numbers a workspace may send an OTP to."""

import phonenumbers
from phonenumbers import PhoneNumberType

from workspaces.models import NON_GEOGRAPHIC_REGION, Workspace

# Numbers that cost the sender a premium, or that cannot read an SMS: the classic SMS-pumping targets.
ALWAYS_REFUSED_TYPES = {
    PhoneNumberType.PREMIUM_RATE: "premium-rate",
    PhoneNumberType.SHARED_COST: "shared-cost",
    PhoneNumberType.TOLL_FREE: "toll-free",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "UAN",
    PhoneNumberType.VOICEMAIL: "voicemail-only",
}
OPTIONALLY_REFUSED_TYPES = {
    PhoneNumberType.FIXED_LINE: "fixed-line",
    PhoneNumberType.VOIP: "VoIP",
}


class DestinationRefused(Exception):
    """`dest` cannot be used; the message goes to the client as errors.dest."""


def destination_parse(dest: str) -> phonenumbers.PhoneNumber:
    """A valid number written exactly in E.164 form, or DestinationRefused."""
    if not dest.startswith("+"):
        raise DestinationRefused("Use the international E.164 format, e.g. +233202007745.")
    try:
        number = phonenumbers.parse(dest, None)
    except phonenumbers.NumberParseException:
        raise DestinationRefused("Use the international E.164 format, e.g. +233202007745.") from None
    if phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) != dest:
        raise DestinationRefused("Use the international E.164 format with no spaces or dashes, e.g. +233202007745.")
    if not phonenumbers.is_valid_number(number):
        raise DestinationRefused("This is not a valid phone number.")
    return number


def destination_check(*, workspace: Workspace, dest: str) -> str:
    """Validates `dest` against the workspace's policy; returns its region (ISO 3166 alpha-2, or "001")."""
    number = destination_parse(dest)
    region = phonenumbers.region_code_for_number(number) or ""
    allowed = workspace.allowed_country_codes
    if region == NON_GEOGRAPHIC_REGION and region not in allowed:
        # Satellite and international networks: costly, rarely anyone's users, a favourite of SMS pumping.
        raise DestinationRefused(
            f"Numbers that belong to no country (+{number.country_code}) are refused unless the workspace "
            f"allows {NON_GEOGRAPHIC_REGION}."
        )
    if allowed and region not in allowed:
        raise DestinationRefused(f"This workspace does not send to numbers in {region or 'this region'}.")
    number_type = phonenumbers.number_type(number)
    refused = ALWAYS_REFUSED_TYPES.get(number_type)
    if refused is None and workspace.refuse_fixed_line_and_voip:
        refused = OPTIONALLY_REFUSED_TYPES.get(number_type)
    if refused:
        raise DestinationRefused(f"OTP SMS are not sent to {refused} numbers.")
    return region
