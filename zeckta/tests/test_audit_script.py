"""`make audit` fails for every reason but an unreachable vulnerability database, and says which."""

import importlib.util

from django.conf import settings

spec = importlib.util.spec_from_file_location("audit_dependencies", settings.BASE_DIR / "scripts/audit_dependencies.py")
audit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(audit)


def test_a_clean_audit_passes():
    assert audit.judge(0, "No known vulnerabilities found\n").exit_code == 0


def test_an_unreachable_database_passes_and_says_nothing_was_checked():
    verdict = audit.judge(0, "django  Dependency not found on PyPI and could not be audited: django (5.2)\n")
    assert verdict.exit_code == 0 and "could not be checked" in verdict.message
    verdict = audit.judge(1, "requests.exceptions.ConnectionError: Max retries exceeded with url: /pypi/\n")
    assert verdict.exit_code == 0 and "nothing could be checked" in verdict.message


def test_a_vulnerability_fails():
    verdict = audit.judge(1, "Found 1 known vulnerability in 1 package\nName Version ID\ndjango 5.2 PYSEC-1\n")
    assert verdict.exit_code == 1 and "known vulnerabilities" in verdict.message


def test_any_other_failure_fails_with_its_reason():
    verdict = audit.judge(2, "usage: pip-audit ...\npip-audit: error: unrecognized arguments: --bogus\n")
    assert verdict.exit_code == 2
    assert verdict.message.endswith("pip-audit: error: unrecognized arguments: --bogus")
    assert audit.judge(1, "Traceback ...\nValueError: broken\n").exit_code == 1
