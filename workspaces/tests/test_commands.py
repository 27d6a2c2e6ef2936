"""Operator commands for workspaces, keys and balances: the result on the last stdout line, one-line errors."""

import hashlib

import pytest
from django.core.management import CommandError

from workspaces.billing import balance_credit
from workspaces.models import ApiKey, LedgerEntry, Workspace
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.testing import assert_one_line_error, manage
from zeckta.testing import run_command as run

# --- create_workspace --------------------------------------------------------------------------


def test_create_workspace_prints_the_slug_last_and_stores_the_policy(db):
    lines = run(
        "create_workspace",
        "Acme Bank",
        "--no-otp-reuse",
        "--otp-validity",
        "120",
        "--otp-attempts",
        "3",
        "--otp-length",
        "8",
        "--countries",
        "gh, ng",
    )
    assert lines[-1] == "acme-bank"
    workspace = Workspace.objects.get(slug="acme-bank")
    assert (workspace.name, workspace.otp_reuse_enabled, workspace.otp_validity_seconds) == ("Acme Bank", False, 120)
    assert (workspace.otp_max_attempts, workspace.otp_code_length) == (3, 8)
    assert workspace.allowed_countries == "GH,NG"
    assert workspace.is_prepaid is False
    assert not LedgerEntry.objects.exists()


def test_create_workspace_with_a_slug_and_prepaid_units_records_the_opening_balance(db):
    assert run("create_workspace", "Acme", "--slug", "acme-gh", "--prepaid", "500")[-1] == "acme-gh"
    workspace = Workspace.objects.get(slug="acme-gh")
    assert (workspace.is_prepaid, workspace.balance_units) == (True, 500)
    entry = LedgerEntry.objects.get(workspace=workspace)
    assert (entry.delta_units, entry.balance_after, entry.reason) == (500, 500, LedgerEntry.Reason.OPENING)


@pytest.mark.parametrize(
    "option, value",
    [
        ("--otp-validity", "9"),
        ("--otp-validity", "86401"),
        ("--otp-attempts", "0"),
        ("--otp-attempts", "11"),
        ("--otp-length", "3"),
        ("--otp-length", "11"),
        ("--prepaid", "-1"),
        ("--countries", "GH,ZZ"),
        ("--otp-validity", "soon"),
        ("--daily-sms-cap", "-1"),
        ("--daily-sms-cap", "100000001"),
        ("--daily-sms-cap", "lots"),
        ("--fraud-guard", "loose"),
        ("--fraud-guard", "ENFORCE"),
    ],
)
def test_create_workspace_refuses_bad_values_and_creates_nothing(db, option, value):
    with pytest.raises(CommandError):
        run("create_workspace", "Acme", option, value)
    assert not Workspace.objects.exists()


def test_create_workspace_sets_the_fraud_guard_and_the_daily_cap(db):
    assert run("create_workspace", "Bench", "--fraud-guard", "shadow", "--daily-sms-cap", "0")[-1] == "bench"
    bench = Workspace.objects.get(slug="bench")
    assert (bench.fraud_guard_mode, bench.daily_sms_cap) == ("shadow", 0)  # 0: no cap

    lines = run("create_workspace", "Off", "--fraud-guard", "off", "--daily-sms-cap", "100000000")
    assert lines[-1] == "off" and "fraud guard off" in lines[0]
    off = Workspace.objects.get(slug="off")
    assert (off.fraud_guard_mode, off.daily_sms_cap) == ("off", 100_000_000)

    run("create_workspace", "Plain")
    plain = Workspace.objects.get(slug="plain")
    assert (plain.fraud_guard_mode, plain.daily_sms_cap) == (
        "enforce",
        Workspace._meta.get_field("daily_sms_cap").default,
    )


def test_create_workspace_sets_the_channels_and_the_fallback_delay(db):
    assert (
        run("create_workspace", "Multi", "--channels", "whatsapp, SMS,voice", "--fallback-after", "45")[-1] == "multi"
    )
    multi = Workspace.objects.get(slug="multi")
    assert (multi.channels, multi.fallback_after_seconds) == (["whatsapp", "sms", "voice"], 45)

    run("create_workspace", "Plain")
    assert Workspace.objects.values_list("channels", "fallback_after_seconds").get(slug="plain") == (["sms"], 30)


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--channels", "sms,fax", "unknown channel(s): fax"),
        ("--channels", "sms,whatsapp,sms", "sms repeated"),
        ("--channels", " , ", "at least one channel"),
        ("--fallback-after", "4", "between 5 and 600"),
        ("--fallback-after", "601", "between 5 and 600"),
    ],
)
def test_create_workspace_refuses_a_bad_channel_order_or_delay_on_one_line(transactional_db, option, value, says):
    assert_one_line_error(manage("create_workspace", "Acme", option, value), says)
    assert not Workspace.objects.exists()


def test_create_workspace_sets_the_locale_normalised(db):
    assert run("create_workspace", "Lisboa", "--locale", "PT-br")[-1] == "lisboa"
    assert Workspace.objects.get(slug="lisboa").locale == "pt-BR"
    run("create_workspace", "Plain")
    assert Workspace.objects.get(slug="plain").locale == "en"


@pytest.mark.parametrize("tag", ["pt_BR", "english", "f", "fr-", "x-private", "fr-CA-" + "a" * 40])
def test_create_workspace_refuses_a_malformed_locale_in_one_line(db, tag):
    assert_one_line_error(manage("create_workspace", "Acme", "--locale", tag), "not a BCP 47 language tag")
    assert not Workspace.objects.exists()


def test_create_workspace_refuses_a_taken_slug(db):
    WorkspaceFactory(slug="acme")
    with pytest.raises(CommandError, match="already exists"):
        run("create_workspace", "Acme")
    assert Workspace.objects.count() == 1


# --- issue_api_key / list_api_keys / revoke_api_key ---------------------------------------------


def test_issue_api_key_prints_the_raw_key_last_and_stores_only_its_digest(workspace):
    lines = run("issue_api_key", "acme", "--name", "backend", "--tps", "25", "--expires-in-days", "30")
    raw_key = lines[-1]
    assert raw_key.startswith("zk_live_") and len(raw_key) > 40
    api_key = ApiKey.objects.get()
    assert api_key.digest == hashlib.sha256(raw_key.encode()).hexdigest()
    assert raw_key.startswith(api_key.prefix) and raw_key != api_key.prefix
    assert (api_key.name, api_key.tps, api_key.workspace) == ("backend", 25, workspace)
    assert api_key.expires_at is not None
    assert all(raw_key not in line for line in lines[:-1])


def test_issue_api_key_test_prints_a_test_key_that_list_api_keys_shows_as_such(workspace):
    lines = run("issue_api_key", "acme", "--test", "--name", "ci", "--tps", "5")
    raw_key = lines[-1]
    assert raw_key.startswith("zk_test_") and len(raw_key) > 40
    assert all(raw_key not in line for line in lines[:-1])
    api_key = ApiKey.objects.get()
    assert (api_key.is_test, api_key.name, api_key.tps, api_key.mode) == (True, "ci", 5, "test")
    assert api_key.prefix.startswith("zk_test_") and raw_key.startswith(api_key.prefix)
    live, _ = issue_key(workspace, name="web")
    assert not live.is_test and live.prefix.startswith("zk_live_")

    listed = run("list_api_keys", "acme")
    assert listed[0].split() == ["prefix", "name", "tps", "created", "last", "used", "revoked"]
    assert next(line for line in listed if line.startswith("zk_test_")).split()[:2] == [api_key.prefix, "ci"]


@pytest.mark.parametrize("args", [("nope",), ("acme", "--tps", "0"), ("acme", "--expires-in-days", "0")])
def test_issue_api_key_refuses_bad_input(workspace, args):
    with pytest.raises(CommandError):
        run("issue_api_key", *args)
    assert not ApiKey.objects.exists()


def test_list_api_keys_prints_a_table_of_prefixes_never_keys(workspace):
    live, live_raw = issue_key(workspace, name="web")
    revoked, _ = issue_key(workspace, name="old")
    run("revoke_api_key", revoked.prefix)
    other, _ = issue_key(WorkspaceFactory(), name="foreign")
    lines = run("list_api_keys", "acme")
    assert lines[0].split() == ["prefix", "name", "tps", "created", "last", "used", "revoked"]
    output = "\n".join(lines)
    assert live.prefix in output and revoked.prefix in output and other.prefix not in output
    assert live_raw not in output and live.digest not in output
    revoked_row = next(line for line in lines if line.startswith(revoked.prefix))
    assert revoked_row.rstrip().endswith(f"{ApiKey.objects.get(pk=revoked.pk).revoked_at:%Y-%m-%d %H:%M}")
    live_row = next(line for line in lines if line.startswith(live.prefix))
    assert live_row.rstrip().endswith("-")


def test_list_api_keys_refuses_an_unknown_slug(db):
    with pytest.raises(CommandError, match="no workspace"):
        run("list_api_keys", "nope")


def test_revoke_api_key_prints_the_prefix_and_keeps_the_first_revocation_time(workspace):
    api_key, _ = issue_key(workspace)
    assert run("revoke_api_key", api_key.prefix)[-1] == f"revoked {api_key.prefix}"
    first = ApiKey.objects.get().revoked_at
    assert first is not None
    assert run("revoke_api_key", api_key.prefix)[-1] == f"revoked {api_key.prefix}"
    assert ApiKey.objects.get().revoked_at == first


def test_revoke_api_key_refuses_an_unknown_prefix(workspace):
    issue_key(workspace)
    with pytest.raises(CommandError, match="no API key"):
        run("revoke_api_key", "zk_live_unknown")
    assert ApiKey.objects.get().revoked_at is None


# --- credit_workspace --------------------------------------------------------------------------


def test_credit_workspace_prints_the_new_balance_and_writes_a_ledger_row(db):
    workspace = WorkspaceFactory(slug="pre", is_prepaid=True)
    balance_credit(workspace=workspace, units=10)
    assert run("credit_workspace", "pre", "250")[-1] == "260"
    workspace.refresh_from_db()
    assert workspace.balance_units == 260
    entry = LedgerEntry.objects.filter(workspace=workspace).first()
    assert (entry.delta_units, entry.balance_after, entry.reason, entry.actor) == (
        250,
        260,
        LedgerEntry.Reason.CREDIT,
        "command:credit_workspace",
    )


@pytest.mark.parametrize("units", ["0", "-5", "ten"])
def test_credit_workspace_refuses_units_that_are_not_positive_integers(db, units):
    WorkspaceFactory(slug="pre", is_prepaid=True)
    with pytest.raises(CommandError):
        run("credit_workspace", "pre", units)
    assert Workspace.objects.get().balance_units == 0
    assert not LedgerEntry.objects.exists()


def test_credit_workspace_refuses_a_postpaid_workspace(workspace):
    with pytest.raises(CommandError, match="postpaid"):
        run("credit_workspace", "acme", "100")
    workspace.refresh_from_db()
    assert workspace.balance_units == 0
    assert not LedgerEntry.objects.exists()


def test_credit_workspace_refuses_an_unknown_slug(db):
    with pytest.raises(CommandError, match="no workspace"):
        run("credit_workspace", "nope", "5")


# --- As operators run them: a real process, exit codes and streams ------------------------------


def test_commands_as_processes_print_the_result_last_and_exit_zero(transactional_db):
    created = manage("create_workspace", "Proc Co", "--prepaid", "20")
    assert created.returncode == 0, created.stderr
    assert created.stdout.splitlines()[-1] == "proc-co"
    assert created.stderr == ""

    issued = manage("issue_api_key", "proc-co", "--name", "ci")
    assert issued.returncode == 0, issued.stderr
    raw_key = issued.stdout.splitlines()[-1]
    api_key = ApiKey.objects.get(workspace__slug="proc-co")
    assert api_key.digest == hashlib.sha256(raw_key.encode()).hexdigest()
    assert not ApiKey.objects.filter(digest=raw_key).exists() and not ApiKey.objects.filter(prefix=raw_key).exists()

    listed = manage("list_api_keys", "proc-co")
    assert listed.returncode == 0 and api_key.prefix in listed.stdout and raw_key not in listed.stdout

    revoked = manage("revoke_api_key", api_key.prefix)
    assert revoked.returncode == 0 and revoked.stdout.splitlines()[-1] == f"revoked {api_key.prefix}"
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None

    credited = manage("credit_workspace", "proc-co", "5")
    assert credited.returncode == 0 and credited.stdout.splitlines()[-1] == "25"
    assert Workspace.objects.get(slug="proc-co").balance_units == 25


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("create_workspace", "Bad", "--otp-validity", "5"), "between 10 and 86400"),
        (("create_workspace", "Bad", "--otp-attempts", "x"), "must be a whole number between 1 and 10, not 'x'"),
        (("create_workspace", "Bad", "--countries", "XX"), "unknown country"),
        (("create_workspace",), "required: name"),
        (("issue_api_key", "nope"), "no workspace with slug 'nope'"),
        (("revoke_api_key", "zk_live_nothing"), "no API key"),
        (("credit_workspace", "nope", "5"), "no workspace"),
        (("credit_workspace", "nope", "-5"), "between 1 and 1000000000"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line_on_stderr(transactional_db, args, fragment):
    result = manage(*args)
    assert_one_line_error(result, fragment)
    assert not Workspace.objects.exists()


# --- Bounds on every number (API.md section 6) -------------------------------------------------------


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("credit_workspace", "pre", "9223372036854775807"), "1 and 1000000000"),
        (("credit_workspace", "pre", "1000000001"), "1 and 1000000000"),
        (("credit_workspace", "pre", "0"), "1 and 1000000000"),
        (("issue_api_key", "pre", "--tps", "99999999999"), "1 and 10000"),
        (("issue_api_key", "pre", "--tps", "10001"), "1 and 10000"),
        (("issue_api_key", "pre", "--expires-in-days", "3651"), "1 and 3650"),
        (("create_workspace", "Big", "--prepaid", "9223372036854775807"), "0 and 1000000000"),
        (("create_workspace", "Big", "--otp-validity", "86401"), "10 and 86400"),
        (("create_workspace", "Big", "--otp-attempts", "11"), "1 and 10"),
        (("create_workspace", "Big", "--otp-length", "99999999999999999999"), "4 and 10"),
        (("create_workspace", "Big", "--daily-sms-cap", "100000001"), "0 and 100000000"),
        (("create_workspace", "Big", "--daily-sms-cap", "-1"), "0 and 100000000"),
        (("create_workspace", "Big", "--fraud-guard", "loose"), "invalid choice: 'loose'"),
    ],
)
def test_every_number_a_command_takes_is_bounded_with_a_one_line_error(db, args, fragment):
    WorkspaceFactory(slug="pre", is_prepaid=True)
    result = manage(*args)
    assert_one_line_error(result, fragment)
    assert LedgerEntry.objects.count() == 0 and not ApiKey.objects.exists()
    assert Workspace.objects.count() == 1


def test_the_largest_allowed_numbers_are_accepted(db):
    workspace = WorkspaceFactory(slug="pre", is_prepaid=True)
    assert run("credit_workspace", "pre", "1000000000")[-1] == "1000000000"
    run("issue_api_key", "pre", "--tps", "10000", "--expires-in-days", "3650")
    assert ApiKey.objects.get(workspace=workspace).tps == 10_000
