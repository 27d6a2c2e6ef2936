"""The admin for workspaces, API keys and the ledger: what operators see, and what they must never see."""

import hashlib
import re

import pytest
from django.contrib.admin.sites import site
from django.test import RequestFactory
from django.urls import reverse

from workspaces.admin import WORKSPACE_FRAUD_FIELDS
from workspaces.billing import balance_credit
from workspaces.models import ApiKey, AuditEvent, LedgerEntry, Workspace
from workspaces.tests.factories import WorkspaceFactory, issue_key

CHANGELIST = "admin:workspaces_{}_changelist"
CHANGE = "admin:workspaces_{}_change"


def workspace_form_data(workspace: Workspace, **changes) -> dict:
    data = {
        "name": workspace.name,
        "slug": workspace.slug,
        "is_active": "on",
        "otp_reuse_enabled": "on",
        "otp_validity_seconds": workspace.otp_validity_seconds,
        "otp_max_attempts": workspace.otp_max_attempts,
        "otp_code_length": workspace.otp_code_length,
        "default_message_template": "",
        "locale": workspace.locale,
        "allowed_countries": "",
        "destination_limit": workspace.destination_limit,
        "destination_window_seconds": workspace.destination_window_seconds,
        "country_hourly_limit": "",
        "wrong_code_budget": workspace.wrong_code_budget,
        "daily_sms_cap": workspace.daily_sms_cap,
        **{name: getattr(workspace, name) for name in WORKSPACE_FRAUD_FIELDS},
        "channels": ",".join(workspace.channels),
        "fallback_after_seconds": workspace.fallback_after_seconds,
        "units_per_sms_segment": workspace.units_per_sms_segment,
        "units_per_whatsapp_message": workspace.units_per_whatsapp_message,
        "units_per_call": workspace.units_per_call,
        "api_keys-TOTAL_FORMS": "0",
        "api_keys-INITIAL_FORMS": "0",
        "api_keys-MIN_NUM_FORMS": "0",
        "api_keys-MAX_NUM_FORMS": "1000",
        # The fraud guard's safe list (its inline, added by the fraud app's admin): no entry.
        "fraud_safe_list-TOTAL_FORMS": "0",
        "fraud_safe_list-INITIAL_FORMS": "0",
        "fraud_safe_list-MIN_NUM_FORMS": "0",
        "fraud_safe_list-MAX_NUM_FORMS": "1000",
    }
    if workspace.is_prepaid:
        data["is_prepaid"] = "on"
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


# --- Workspace ----------------------------------------------------------------------------------


def test_workspace_changelist_search_and_filters(admin_client):
    WorkspaceFactory(name="Acme Bank", slug="acme-bank", is_prepaid=True)
    WorkspaceFactory(name="Globex", slug="globex", is_active=False, otp_reuse_enabled=False)
    url = reverse(CHANGELIST.format("workspace"))
    page = admin_client.get(url)
    assert page.status_code == 200
    assert "acme-bank" in page.text and "globex" in page.text

    def slugs(query: dict) -> set[str]:
        response = admin_client.get(url, query)
        assert response.status_code == 200
        return {workspace.slug for workspace in response.context["cl"].result_list}

    assert slugs({"q": "acme"}) == {"acme-bank"}
    assert slugs({"q": "globex"}) == {"globex"}
    assert slugs({"is_active__exact": "0"}) == {"globex"}
    assert slugs({"is_prepaid__exact": "1"}) == {"acme-bank"}
    assert slugs({"otp_reuse_enabled__exact": "0"}) == {"globex"}


def test_workspace_change_page_lists_keys_by_prefix_but_never_a_digest(admin_client, workspace):
    api_key, raw_key = issue_key(workspace, name="backend")
    page = admin_client.get(reverse(CHANGE.format("workspace"), args=[workspace.pk]))
    assert page.status_code == 200
    assert api_key.prefix in page.text and "backend" in page.text
    assert api_key.digest not in page.text and raw_key not in page.text
    assert 'name="balance_units"' not in page.text  # shown, never editable
    assert "ledger entries" in page.text


def test_workspace_policy_is_editable_and_countries_are_normalised(admin_client, workspace):
    url = reverse(CHANGE.format("workspace"), args=[workspace.pk])
    data = workspace_form_data(
        workspace,
        otp_validity_seconds="600",
        otp_max_attempts="3",
        otp_reuse_enabled=None,
        default_message_template="Your <OTP> code, valid <MINUTES> min.",
        allowed_countries="ng, gh",
    )
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    workspace.refresh_from_db()
    assert (workspace.otp_validity_seconds, workspace.otp_max_attempts, workspace.otp_reuse_enabled) == (600, 3, False)
    assert workspace.default_message_template == "Your <OTP> code, valid <MINUTES> min."
    assert workspace.allowed_countries == "GH,NG"


def test_workspace_locale_is_editable_normalised_and_checked(admin_client, workspace):
    url = reverse(CHANGE.format("workspace"), args=[workspace.pk])
    assert admin_client.post(url, workspace_form_data(workspace, locale="FR-ca")).status_code == 302
    workspace.refresh_from_db()
    assert workspace.locale == "fr-CA"
    response = admin_client.post(url, workspace_form_data(workspace, locale="french"))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["locale"] == ["Use a BCP 47 language tag such as en, fr or pt-BR."]
    workspace.refresh_from_db()
    assert workspace.locale == "fr-CA"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("default_message_template", "No code here", "exactly once"),
        ("default_message_template", "<OTP> and <SECRET_KEY>", "Unknown placeholder"),
        ("allowed_countries", "GH,QQ", "unknown country"),
        ("otp_validity_seconds", "5", "greater than or equal to 10"),
        ("otp_code_length", "12", "less than or equal to 10"),
    ],
)
def test_workspace_form_refuses_bad_policy(admin_client, workspace, field, value, message):
    url = reverse(CHANGE.format("workspace"), args=[workspace.pk])
    response = admin_client.post(url, workspace_form_data(workspace, **{field: value}))
    assert response.status_code == 200
    assert message in str(response.context["adminform"].form.errors[field])
    assert getattr(Workspace.objects.get(pk=workspace.pk), field) != value


def test_saving_a_workspace_never_writes_back_a_stale_balance(admin_user, db):
    """The admin loads the row, a debit or credit commits, then the admin saves: the balance must survive."""
    workspace = WorkspaceFactory(is_prepaid=True)
    stale = Workspace.objects.get(pk=workspace.pk)
    balance_credit(workspace=workspace, units=40)
    model_admin = site._registry[Workspace]
    request = RequestFactory().post("/")
    request.user = admin_user
    form = model_admin.get_form(request, stale, change=True)(workspace_form_data(stale, name="Renamed"), instance=stale)
    assert form.is_valid(), form.errors
    model_admin.save_model(request, form.save(commit=False), form, change=True)
    workspace.refresh_from_db()
    assert (workspace.name, workspace.balance_units) == ("Renamed", 40)


def test_credit_balance_action_asks_for_units_then_credits_through_the_ledger(admin_client, admin_user, db):
    prepaid = WorkspaceFactory(slug="pre", is_prepaid=True)
    postpaid = WorkspaceFactory(slug="post")
    url = reverse(CHANGELIST.format("workspace"))
    selected = {"action": "credit_balance", "_selected_action": [prepaid.pk, postpaid.pk]}

    ask = admin_client.post(url, selected)
    assert ask.status_code == 200 and 'name="units"' in ask.text
    assert not LedgerEntry.objects.exists()

    refused = admin_client.post(url, {**selected, "apply": "yes", "units": "-3"})
    assert refused.status_code == 200 and not LedgerEntry.objects.exists()

    done = admin_client.post(url, {**selected, "apply": "yes", "units": "75", "reference": "INV-7"}, follow=True)
    assert done.status_code == 200
    assert "Credited pre: the balance is now 75." in done.text
    assert "Skipped post: it is postpaid" in done.text
    entry = LedgerEntry.objects.get()
    assert (entry.workspace, entry.delta_units, entry.balance_after) == (prepaid, 75, 75)
    assert (entry.actor, entry.reference, entry.reason) == (admin_user.username, "INV-7", "credit")
    assert Workspace.objects.get(pk=postpaid.pk).balance_units == 0


def test_ledger_is_listed_read_only_and_filters_by_workspace_and_reason(admin_client, db):
    first = WorkspaceFactory(slug="one", is_prepaid=True)
    second = WorkspaceFactory(slug="two", is_prepaid=True)
    balance_credit(workspace=first, units=5, actor="ops")
    balance_credit(workspace=second, units=9, actor="ops")
    url = reverse(CHANGELIST.format("ledgerentry"))
    page = admin_client.get(url)
    assert page.status_code == 200
    filtered = admin_client.get(url, {"workspace__id__exact": first.pk, "reason__exact": "credit"})
    assert [entry.workspace for entry in filtered.context["cl"].result_list] == [first]
    entry = LedgerEntry.objects.get(workspace=first)
    assert admin_client.get(reverse(CHANGE.format("ledgerentry"), args=[entry.pk])).status_code == 200
    assert admin_client.get(reverse("admin:workspaces_ledgerentry_add")).status_code == 403
    assert admin_client.post(reverse(CHANGE.format("ledgerentry"), args=[entry.pk]), {}).status_code == 403
    assert admin_client.get(reverse("admin:workspaces_ledgerentry_delete", args=[entry.pk])).status_code == 403


# --- ApiKey -------------------------------------------------------------------------------------


def test_api_key_changelist_search_filters_and_change_page_never_show_the_digest(admin_client, workspace):
    other = WorkspaceFactory(slug="other")
    live, live_raw = issue_key(workspace, name="backend")
    dead, _ = issue_key(other, name="legacy")
    ApiKey.objects.filter(pk=dead.pk).update(revoked_at=dead.created_at)
    url = reverse(CHANGELIST.format("apikey"))
    page = admin_client.get(url)
    assert page.status_code == 200
    for api_key in (live, dead):
        assert api_key.prefix in page.text and api_key.digest not in page.text

    def prefixes(query: dict) -> set[str]:
        response = admin_client.get(url, query)
        assert response.status_code == 200
        return {api_key.prefix for api_key in response.context["cl"].result_list}

    assert prefixes({"q": live.prefix}) == {live.prefix}
    assert prefixes({"q": "legacy"}) == {dead.prefix}
    assert prefixes({"q": "other"}) == {dead.prefix}
    assert prefixes({"workspace__id__exact": workspace.pk}) == {live.prefix}
    assert prefixes({"revoked": "yes"}) == {dead.prefix}
    assert prefixes({"revoked": "no"}) == {live.prefix}

    change = admin_client.get(reverse(CHANGE.format("apikey"), args=[live.pk]))
    assert change.status_code == 200
    assert live.digest not in change.text and live_raw not in change.text
    assert 'name="prefix"' not in change.text and 'name="digest"' not in change.text


def test_issuing_a_key_in_the_admin_shows_it_once_and_stores_only_its_digest(admin_client, workspace):
    add_url = reverse("admin:workspaces_apikey_add")
    assert admin_client.get(add_url).status_code == 200
    response = admin_client.post(
        add_url, {"workspace": workspace.pk, "name": "admin-made", "tps": "7", "expires_in_days": "14"}
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    raw_key = re.search(r'value="(zk_live_[A-Za-z0-9_\-]+)"', response.text).group(1)

    api_key = ApiKey.objects.get()  # exactly one row: the service's
    assert api_key.digest == hashlib.sha256(raw_key.encode()).hexdigest()
    assert raw_key.startswith(api_key.prefix) and raw_key != api_key.prefix
    assert (api_key.workspace, api_key.name, api_key.tps) == (workspace, "admin-made", 7)
    assert api_key.expires_at is not None
    assert raw_key not in str(ApiKey.objects.values().get())

    for url in (
        reverse(CHANGELIST.format("apikey")),
        reverse(CHANGE.format("apikey"), args=[api_key.pk]),
        reverse(CHANGE.format("workspace"), args=[workspace.pk]),
        reverse("admin:index"),
    ):
        page = admin_client.get(url)
        assert page.status_code == 200
        assert raw_key not in page.text and api_key.digest not in page.text


def test_the_admin_issues_test_keys_and_lists_and_filters_them_by_mode(admin_client, workspace):
    live, _ = issue_key(workspace, name="web")
    response = admin_client.post(
        reverse("admin:workspaces_apikey_add"), {"workspace": workspace.pk, "name": "ci", "tps": "5", "test": "on"}
    )
    assert response.status_code == 200
    raw_key = re.search(r'value="(zk_test_[A-Za-z0-9_\-]+)"', response.text).group(1)
    test = ApiKey.objects.get(is_test=True)
    assert raw_key.startswith(test.prefix) and test.name == "ci"

    url = reverse(CHANGELIST.format("apikey"))
    page = admin_client.get(url)
    assert page.status_code == 200 and '<td class="field-mode">test</td>' in page.text
    listed = admin_client.get(url, {"is_test__exact": "1"}).context["cl"].result_list
    assert [api_key.prefix for api_key in listed] == [test.prefix]
    listed = admin_client.get(url, {"is_test__exact": "0"}).context["cl"].result_list
    assert [api_key.prefix for api_key in listed] == [live.prefix]


def test_issuing_a_key_in_the_admin_refuses_a_bad_tps_and_creates_nothing(admin_client, workspace):
    response = admin_client.post(reverse("admin:workspaces_apikey_add"), {"workspace": workspace.pk, "tps": "0"})
    assert response.status_code == 200
    assert "tps" in response.context["adminform"].form.errors
    assert not ApiKey.objects.exists()


def test_editing_a_key_changes_only_its_label_limits_and_expiry(admin_client, workspace):
    api_key, _ = issue_key(workspace, name="old")
    url = reverse(CHANGE.format("apikey"), args=[api_key.pk])
    response = admin_client.post(url, {"name": "new", "tps": "3", "expires_at_0": "", "expires_at_1": ""})
    assert response.status_code == 302
    saved = ApiKey.objects.get()
    assert (saved.name, saved.tps, saved.digest, saved.prefix) == ("new", 3, api_key.digest, api_key.prefix)


def test_revoke_selected_keys_action_revokes_through_the_service(admin_client, workspace):
    first, _ = issue_key(workspace)
    second, _ = issue_key(workspace)
    kept, _ = issue_key(workspace)
    response = admin_client.post(
        reverse(CHANGELIST.format("apikey")),
        {"action": "revoke_selected", "_selected_action": [first.pk, second.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Revoked 2 key(s)" in response.text
    assert set(ApiKey.objects.filter(revoked_at__isnull=False).values_list("pk", flat=True)) == {first.pk, second.pk}
    assert ApiKey.objects.get(pk=kept.pk).revoked_at is None


def test_keys_cannot_be_deleted_in_the_admin(admin_client, workspace):
    api_key, _ = issue_key(workspace)
    assert admin_client.get(reverse("admin:workspaces_apikey_delete", args=[api_key.pk])).status_code == 403
    assert ApiKey.objects.exists()


def test_adding_a_workspace_in_the_admin_starts_at_a_zero_balance(admin_client, db):
    url = reverse("admin:workspaces_workspace_add")
    assert admin_client.get(url).status_code == 200
    data = workspace_form_data(Workspace(name="New Co", slug="new-co", is_prepaid=True))
    assert admin_client.post(url, data).status_code == 302
    created = Workspace.objects.get(slug="new-co")
    assert (created.is_prepaid, created.balance_units) == (True, 0)


def test_a_workspace_with_keys_saves_from_its_own_change_page(admin_client, workspace):
    """Posts back exactly what the page renders, inline key rows included."""
    api_key, _ = issue_key(workspace, name="backend")
    url = reverse(CHANGE.format("workspace"), args=[workspace.pk])
    page = admin_client.get(url)
    form = page.context["adminform"].form
    data = {name: value for name, value in form.initial.items() if name in form.fields and value is not None}
    data = {**data, "name": "Acme Renamed", "is_active": "on", "otp_reuse_enabled": "on"}
    data = {name: value for name, value in data.items() if value is not False}
    for formset in page.context["inline_admin_formsets"]:
        management = formset.formset.management_form
        data.update({management.add_prefix(name): value for name, value in management.initial.items()})
        for inline_form in formset.formset.forms:
            data[inline_form.add_prefix("id")] = inline_form.instance.pk
            data[inline_form.add_prefix("workspace")] = workspace.pk
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Workspace.objects.get(pk=workspace.pk).name == "Acme Renamed"
    assert ApiKey.objects.get(pk=api_key.pk).digest == api_key.digest


def test_help_text_with_placeholders_is_shown_as_text(admin_client, workspace):
    page = admin_client.get(reverse(CHANGE.format("workspace"), args=[workspace.pk]))
    assert "Must contain &lt;OTP&gt; once" in page.text  # escaped: the browser shows <OTP>
    assert "Must contain <OTP> once" not in page.text


def test_crediting_a_balance_needs_its_own_permission(client, db):
    from django.contrib.auth.models import Permission, User

    staff = User.objects.create_user("clerk", password="pw-1234567890", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_workspace", "change_workspace"]))
    client.force_login(staff)
    workspace = WorkspaceFactory(slug="pre", is_prepaid=True)
    url = reverse(CHANGELIST.format("workspace"))

    page = client.get(url)
    refused = client.post(
        url, {"action": "credit_balance", "_selected_action": [workspace.pk], "apply": "yes", "units": "75"}
    )

    assert "credit_balance" not in page.text
    assert refused.status_code in (200, 302)
    assert Workspace.objects.get(pk=workspace.pk).balance_units == 0 and not LedgerEntry.objects.exists()
    staff.user_permissions.add(Permission.objects.get(codename="credit_balance"))
    staff = User.objects.get(pk=staff.pk)  # permissions are cached on the instance
    client.force_login(staff)
    assert "credit_balance" in client.get(url).text


def workspace_staff(client, *, codenames: tuple[str, ...] = ("view_workspace", "change_workspace", "add_workspace")):
    """A logged-in staff user with the workspace rights and without the permission to credit a balance."""
    from django.contrib.auth.models import Permission, User

    staff = User.objects.create_user("clerk", password="pw-1234567890", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(staff)
    return staff


@pytest.mark.parametrize("prepaid", [True, False])
def test_the_billing_mode_is_read_only_without_the_credit_permission(client, db, prepaid):
    workspace_staff(client)
    workspace = WorkspaceFactory(slug="pre", is_prepaid=prepaid)
    url = reverse(CHANGE.format("workspace"), args=[workspace.pk])

    page = client.get(url)
    flipped = workspace_form_data(workspace, name="Renamed", is_prepaid=None if prepaid else "on")
    response = client.post(url, flipped)

    assert page.status_code == 200 and 'name="is_prepaid"' not in page.text
    assert response.status_code == 302  # the rest of the form saves; the billing mode is not part of it
    saved = Workspace.objects.get(pk=workspace.pk)
    assert (saved.name, saved.is_prepaid, saved.balance_units) == ("Renamed", prepaid, 0)
    assert not AuditEvent.objects.filter(detail__changes__has_key="is_prepaid").exists()


def test_a_workspace_added_without_the_credit_permission_starts_prepaid_at_zero(client, db):
    workspace_staff(client)
    url = reverse("admin:workspaces_workspace_add")

    page = client.get(url)
    response = client.post(url, workspace_form_data(Workspace(name="New Co", slug="new-co")))  # is_prepaid unticked

    assert page.status_code == 200 and 'name="is_prepaid"' not in page.text
    assert response.status_code == 302
    created = Workspace.objects.get(slug="new-co")
    assert (created.is_prepaid, created.balance_units) == (True, 0)  # it can spend nothing yet
    assert AuditEvent.objects.get(action=AuditEvent.Action.WORKSPACE_CREATED).detail["prepaid"] is True


def test_staff_with_the_credit_permission_choose_the_billing_mode(client, db):
    workspace_staff(client, codenames=("view_workspace", "change_workspace", "add_workspace", "credit_balance"))
    workspace = WorkspaceFactory(slug="pre", is_prepaid=True)
    url = reverse(CHANGE.format("workspace"), args=[workspace.pk])

    assert 'name="is_prepaid"' in client.get(url).text
    assert client.post(url, workspace_form_data(workspace, is_prepaid=None)).status_code == 302
    assert Workspace.objects.get(pk=workspace.pk).is_prepaid is False
    added = client.post(
        reverse("admin:workspaces_workspace_add"), workspace_form_data(Workspace(name="Post", slug="post"))
    )
    assert added.status_code == 302 and Workspace.objects.get(slug="post").is_prepaid is False


def test_admin_logins_are_throttled(client, admin_user):
    url = reverse("admin:login")
    failures = [
        client.post(url, {"username": admin_user.username, "password": "wrong"}, REMOTE_ADDR="203.0.113.9").status_code
        for _ in range(5)
    ]
    assert failures[:4] == [200] * 4  # the form again, with its error; the fifth failure locks
    locked = client.post(url, {"username": admin_user.username, "password": "password"}, REMOTE_ADDR="203.0.113.9")

    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session


def test_the_channel_order_and_fallback_delay_are_editable(admin_client, workspace):
    url = reverse(CHANGE.format("workspace"), args=[workspace.pk])
    data = workspace_form_data(workspace, channels="whatsapp, sms,voice", fallback_after_seconds="45")
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    workspace.refresh_from_db()
    assert (workspace.channels, workspace.fallback_after_seconds) == (["whatsapp", "sms", "voice"], 45)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("channels", "sms,fax", "unknown channel"),
        ("channels", "sms,sms", "repeated"),
        ("fallback_after_seconds", "4", "greater than or equal to 5"),
        ("fallback_after_seconds", "601", "less than or equal to 600"),
    ],
)
def test_the_channel_order_and_fallback_delay_are_validated(admin_client, workspace, field, value, message):
    url = reverse(CHANGE.format("workspace"), args=[workspace.pk])
    response = admin_client.post(url, workspace_form_data(workspace, **{field: value}))
    assert response.status_code == 200
    assert message in str(response.context["adminform"].form.errors[field])
    workspace.refresh_from_db()
    assert (workspace.channels, workspace.fallback_after_seconds) == (["sms"], 30)
