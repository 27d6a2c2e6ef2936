"""The fake HTTP provider of the OTP delivery tests: a relayed SMS goes out the same way."""

from otp.tests.conftest import fake_gateway  # noqa: F401
