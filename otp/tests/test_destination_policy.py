import phonenumbers
import pytest
from phonenumbers import PhoneNumberType

from otp.models import OtpSession
from otp.services import otp_request
from otp.tests.helpers import request_otp

pytestmark = pytest.mark.django_db

ALWAYS_REFUSED = [
    ("+449012345678", PhoneNumberType.PREMIUM_RATE, "premium-rate"),
    ("+33884012345", PhoneNumberType.SHARED_COST, "shared-cost"),
    ("+448001234567", PhoneNumberType.TOLL_FREE, "toll-free"),
    ("+447640123456", PhoneNumberType.PAGER, "pager"),
    ("+445512345678", PhoneNumberType.UAN, "UAN"),
    ("+49177991234567", PhoneNumberType.VOICEMAIL, "voicemail-only"),
]
SWITCHABLE = [
    ("+441212345678", PhoneNumberType.FIXED_LINE, "fixed-line"),
    ("+445612345678", PhoneNumberType.VOIP, "VoIP"),
]


@pytest.mark.parametrize(("dest", "number_type", "label"), ALWAYS_REFUSED)
def test_numbers_that_cannot_or_should_not_get_an_otp_are_refused(api, dest, number_type, label):
    assert phonenumbers.number_type(phonenumbers.parse(dest)) == number_type  # a real number of that type
    response = request_otp(api, dest)
    assert response.status_code == 400
    assert response.json()["errors"]["dest"] == [f"OTP SMS are not sent to {label} numbers."]
    assert not OtpSession.objects.exists()


@pytest.mark.parametrize(("dest", "number_type", "label"), SWITCHABLE)
def test_fixed_line_and_voip_are_refused_only_when_the_workspace_says_so(api, workspace, dest, number_type, label):
    assert phonenumbers.number_type(phonenumbers.parse(dest)) == number_type
    assert request_otp(api, dest).status_code == 200
    workspace.refuse_fixed_line_and_voip = True
    workspace.save()
    response = request_otp(api, dest, purpose="PASSWORD_RESET")
    assert response.status_code == 400 and label in response.json()["errors"]["dest"][0]


def test_mobiles_are_always_accepted(api, workspace):
    workspace.refuse_fixed_line_and_voip = True
    workspace.save()
    assert request_otp(api, "+447400123456").status_code == 200


def test_the_hourly_country_ceiling_stops_a_burst_to_one_country(api, workspace):
    workspace.country_hourly_limit = 2
    workspace.save()
    assert request_otp(api, "+233244000001").status_code == 200
    assert request_otp(api, "+233244000002").status_code == 200
    refused = request_otp(api, "+233244000003")
    assert refused.status_code == 429 and refused.json()["code"] == "DESTINATION_RATE_LIMITED"
    assert "GH" in refused.json()["message"] and int(refused["Retry-After"]) > 0
    assert request_otp(api, "+447400123456").status_code == 200  # another country is unaffected


@pytest.mark.usefixtures("otp_path", "sender")
def test_a_country_ceiling_of_0_is_no_ceiling_on_both_paths(workspace):
    # The database refuses 0 (NULL is the stored "no ceiling"); a 0 that reaches the rules all the same
    # reads as none in both versions, where the SQL function used to fail on it.
    workspace.country_hourly_limit = 0
    sent = [otp_request(workspace=workspace, dest=f"+23324400000{n}", src="ZECKTA", purpose="LOGIN") for n in range(3)]
    assert [result.reused for result in sent] == [False, False, False]
    assert OtpSession.objects.filter(workspace=workspace, country="GH").count() == 3
