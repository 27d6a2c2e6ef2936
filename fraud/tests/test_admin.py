"""The guard in the admin: blocks read-only with their evidence and lifted by an audited action (only by staff who
may change blocks); the safe list on the workspace's page, validated and audited; the workspace's guard fields."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from fraud.models import FraudBlock, SafeListEntry
from fraud.services import safe_list_add
from fraud.tests.factories import FraudBlockFactory
from workspaces.admin import WORKSPACE_FRAUD_FIELDS
from workspaces.models import Workspace
from workspaces.tests.factories import WorkspaceFactory
from workspaces.tests.helpers import events, the_event
from workspaces.tests.test_admin import workspace_form_data

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:fraud_fraudblock_changelist")


def ago(**delta: float):
    return timezone.now() - timedelta(**delta)


def staff_client(client, *codenames: str):
    """A logged-in staff user with only these permissions."""
    user = get_user_model().objects.create_user("clerk", password="clerk-password", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return user


@pytest.fixture
def blocks(workspace):
    """Acme: an active range block, a lifted one, an ended one and a shadow country decision; Globex: one block."""
    globex = WorkspaceFactory(name="Globex", slug="globex")
    return {
        "active": FraudBlockFactory(
            workspace=workspace, value="+233204123", evidence={"sessions": 24, "converted": 1, "numbers": 24}
        ),
        "lifted": FraudBlockFactory(
            workspace=workspace, value="+233204555", rule="range_conversion", lifted_at=timezone.now(), lifted_by="ops"
        ),
        "ended": FraudBlockFactory(
            workspace=workspace, value="+233204777", created_at=ago(hours=3), ends_at=ago(hours=2)
        ),
        "shadow": FraudBlockFactory(
            workspace=workspace, scope="country", value="NG", rule="country_velocity", mode="shadow"
        ),
        "globex": FraudBlockFactory(workspace=globex, value="+234803555"),
    }


def listed(client, **query) -> set[str]:
    response = client.get(CHANGELIST, query)
    assert response.status_code == 200
    return {block.value for block in response.context["cl"].result_list}


# --- The blocks ----------------------------------------------------------------------------------------------


def test_the_block_list_shows_the_evidence_and_filters_and_searches(admin_client, blocks):
    page = admin_client.get(CHANGELIST)
    assert page.status_code == 200
    row = page.text[page.text.index("+233204123xxx") :]
    row = row[: row.index("</tr>")]
    for cell in ("Range velocity", "Enforce", "acme", "until ", ">24<", ">1<"):
        assert cell in row, cell
    assert "NG" in page.text and "lifted " in page.text and "ended " in page.text
    assert listed(admin_client) == {"+233204123", "+233204555", "+233204777", "NG", "+234803555"}
    assert listed(admin_client, state="active") == {"+233204123", "NG", "+234803555"}
    assert listed(admin_client, state="lifted") == {"+233204555"}
    assert listed(admin_client, state="ended") == {"+233204777"}
    assert listed(admin_client, mode__exact="shadow") == {"NG"}
    assert listed(admin_client, rule__exact="range_conversion") == {"+233204555"}
    assert listed(admin_client, scope__exact="country") == {"NG"}
    assert listed(admin_client, q="globex") == {"+234803555"}
    assert listed(admin_client, q="+233204123") == {"+233204123"}


def test_a_block_is_read_only_for_everyone(admin_client, blocks):
    block = blocks["active"]
    change = reverse("admin:fraud_fraudblock_change", args=[block.pk])
    page = admin_client.get(change)
    assert page.status_code == 200
    assert "24 sessions, 1 converted (4%), 24 numbers" in page.text and 'name="value"' not in page.text
    assert admin_client.post(change, {"value": "+233200000"}).status_code == 403
    assert admin_client.get(reverse("admin:fraud_fraudblock_add")).status_code == 403
    assert admin_client.get(reverse("admin:fraud_fraudblock_delete", args=[block.pk])).status_code == 403
    assert FraudBlock.objects.get(pk=block.pk).value == "+233204123"


def test_the_lift_action_lifts_through_the_service_with_the_staff_username(
    admin_client, admin_user, blocks, forgotten, django_capture_on_commit_callbacks
):
    chosen = [blocks["active"], blocks["ended"], blocks["globex"]]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            CHANGELIST, {"action": "lift_selected", "_selected_action": [b.pk for b in chosen]}, follow=True
        )

    assert response.status_code == 200
    assert "Lifted 2 block(s)" in response.text and "+233204123 (acme)" in response.text
    assert "Already lifted or ended, left as they are: +233204777 (acme)" in response.text
    for name in ("active", "globex"):
        block = FraudBlock.objects.get(pk=blocks[name].pk)
        assert block.lifted_at is not None and block.lifted_by == admin_user.username
    assert FraudBlock.objects.get(pk=blocks["ended"].pk).lifted_at is None
    assert {(e.actor, e.target) for e in events("fraud_block.lifted")} == {
        (admin_user.username, str(blocks["active"].public_id)),
        (admin_user.username, str(blocks["globex"].public_id)),
    }
    assert sorted(call["value"] for call in forgotten) == ["+233204123", "+234803555"]


def test_an_active_block_is_lifted_from_its_own_page(
    admin_client, blocks, forgotten, django_capture_on_commit_callbacks
):
    ended = admin_client.get(reverse("admin:fraud_fraudblock_change", args=[blocks["ended"].pk]))
    assert ended.status_code == 200 and 'id="fraud-lift"' not in ended.text  # nothing left to lift
    page = admin_client.get(reverse("admin:fraud_fraudblock_change", args=[blocks["active"].pk]))
    assert 'id="fraud-lift"' in page.text and f'name="_selected_action" value="{blocks["active"].pk}"' in page.text

    # What its button posts:
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(CHANGELIST, {"action": "lift_selected", "_selected_action": [blocks["active"].pk]})

    assert FraudBlock.objects.get(pk=blocks["active"].pk).lifted_at is not None and len(forgotten) == 1
    page = admin_client.get(reverse("admin:fraud_fraudblock_change", args=[blocks["active"].pk]))
    assert 'id="fraud-lift"' not in page.text and "lifted" in page.text


def test_staff_who_may_only_view_blocks_cannot_lift_them(client, blocks, forgotten):
    staff_client(client, "view_fraudblock")
    page = client.get(CHANGELIST)
    assert page.status_code == 200 and "+233204123" in page.text
    assert "lift_selected" not in page.text
    block_page = client.get(reverse("admin:fraud_fraudblock_change", args=[blocks["active"].pk]))
    assert block_page.status_code == 200 and 'id="fraud-lift"' not in block_page.text

    response = client.post(CHANGELIST, {"action": "lift_selected", "_selected_action": [blocks["active"].pk]})

    assert response.status_code in (200, 302)
    assert FraudBlock.objects.get(pk=blocks["active"].pk).lifted_at is None
    assert events("fraud_block.lifted") == [] and forgotten == []


def test_staff_with_the_change_permission_lift(client, blocks, forgotten, django_capture_on_commit_callbacks):
    staff_client(client, "view_fraudblock", "change_fraudblock")
    assert "lift_selected" in client.get(CHANGELIST).text

    with django_capture_on_commit_callbacks(execute=True):
        client.post(CHANGELIST, {"action": "lift_selected", "_selected_action": [blocks["active"].pk]})

    assert FraudBlock.objects.get(pk=blocks["active"].pk).lifted_by == "clerk"
    assert the_event("fraud_block.lifted").actor == "clerk" and len(forgotten) == 1


# --- The workspace's page: the guard's fields and the safe list ----------------------------------------------


def safe_list_forms(*rows: dict, initial: int = 0) -> dict:
    data = {
        "fraud_safe_list-TOTAL_FORMS": str(len(rows)),
        "fraud_safe_list-INITIAL_FORMS": str(initial),
        "fraud_safe_list-MIN_NUM_FORMS": "0",
        "fraud_safe_list-MAX_NUM_FORMS": "1000",
    }
    for index, row in enumerate(rows):
        data.update({f"fraud_safe_list-{index}-{name}": value for name, value in row.items()})
    return data


def test_the_workspace_page_shows_the_guard_its_blocks_and_the_safe_list(admin_client, workspace):
    safe_list_add(workspace=workspace, prefix="+23320", note="Head office", actor="ops")
    FraudBlockFactory(workspace=workspace)
    FraudBlockFactory(workspace=workspace, created_at=ago(days=2), ends_at=ago(days=1))
    FraudBlockFactory()  # another workspace's
    page = admin_client.get(reverse("admin:workspaces_workspace_change", args=[workspace.pk]))
    assert page.status_code == 200
    assert "1 active now, 2 in the last 30 days" in page.text
    assert f"{CHANGELIST}?workspace__id__exact={workspace.pk}" in page.text
    assert "Fraud guard" in page.text and 'name="fraud_guard_mode"' in page.text
    assert 'name="fraud_range_velocity_numbers"' in page.text and 'name="fraud_block_max_seconds"' in page.text
    assert "+23320" in page.text and "Head office" in page.text
    assert 'name="fraud_safe_list-0-prefix"' not in page.text  # an entry is not edited: removed, or another added


def test_every_number_of_the_guard_is_on_the_workspace_page_once():
    """A policy field added to the model and forgotten here would be a number staff cannot tune."""
    guard_fields = [field.name for field in Workspace._meta.fields if field.name.startswith("fraud_")]
    assert sorted(WORKSPACE_FRAUD_FIELDS) == sorted(guard_fields) and len(guard_fields) == 23


def test_the_guard_mode_and_numbers_are_changed_through_the_service_and_audited(admin_client, workspace):
    url = reverse("admin:workspaces_workspace_change", args=[workspace.pk])
    data = {
        **workspace_form_data(workspace, fraud_guard_mode="shadow", fraud_range_velocity_numbers="5"),
        **safe_list_forms(),
    }

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    workspace.refresh_from_db()
    assert (workspace.fraud_guard_mode, workspace.fraud_range_velocity_numbers) == ("shadow", 5)
    assert the_event("workspace.changed").detail["changes"] == {
        "fraud_guard_mode": {"old": "enforce", "new": "shadow"},
        "fraud_range_velocity_numbers": {"old": 10, "new": 5},
    }


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("fraud_guard_mode", "loose", "Select a valid choice"),
        ("fraud_range_conversion_max_percent", "101", "less than or equal to 100"),
        ("fraud_range_velocity_numbers", "0", "greater than or equal to 1"),
        ("fraud_block_max_seconds", "0", "greater than or equal to 1"),
        ("fraud_block_max_seconds", str(30 * 86_400 + 1), "less than or equal to 2592000"),
    ],
)
def test_the_guard_fields_refuse_values_out_of_bounds(admin_client, workspace, field, value, message):
    url = reverse("admin:workspaces_workspace_change", args=[workspace.pk])
    response = admin_client.post(url, {**workspace_form_data(workspace, **{field: value}), **safe_list_forms()})
    assert response.status_code == 200
    assert message in str(response.context["adminform"].form.errors[field])
    assert str(getattr(Workspace.objects.get(pk=workspace.pk), field)) != value


def test_a_prefix_added_on_the_workspace_page_goes_through_the_service(admin_client, admin_user, workspace):
    url = reverse("admin:workspaces_workspace_change", args=[workspace.pk])
    data = {**workspace_form_data(workspace), **safe_list_forms({"prefix": "+233244", "note": "Staff phones"})}

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["inline_admin_formsets"][-1].formset.errors
    entry = SafeListEntry.objects.get()
    assert (entry.workspace, entry.prefix, entry.note, entry.created_by) == (
        workspace,
        "+233244",
        "Staff phones",
        admin_user.username,
    )
    assert the_event("safe_list.added").actor == admin_user.username


@pytest.mark.parametrize("prefix", ["233244", "+23324x", "+2332 44"])
def test_a_prefix_not_in_e164_form_is_refused_on_the_workspace_page(admin_client, workspace, prefix):
    url = reverse("admin:workspaces_workspace_change", args=[workspace.pk])
    data = {**workspace_form_data(workspace, name="Renamed"), **safe_list_forms({"prefix": prefix, "note": ""})}

    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert "+ and 1 to 15 digits" in response.text
    assert not SafeListEntry.objects.exists() and events("safe_list.added") == []
    assert Workspace.objects.get(pk=workspace.pk).name == workspace.name  # the whole page was refused


def test_a_prefix_twice_on_one_workspace_is_refused_on_the_page(admin_client, workspace):
    entry = safe_list_add(workspace=workspace, prefix="+23320", actor="ops")
    url = reverse("admin:workspaces_workspace_change", args=[workspace.pk])
    data = {
        **workspace_form_data(workspace),
        **safe_list_forms({"id": str(entry.pk)}, {"prefix": "+23320", "note": ""}, initial=1),
    }

    response = admin_client.post(url, data)

    assert response.status_code == 200 and SafeListEntry.objects.count() == 1
    assert len(events("safe_list.added")) == 1


def test_an_entry_removed_on_the_workspace_page_goes_through_the_service(admin_client, admin_user, workspace):
    entry = safe_list_add(workspace=workspace, prefix="+23320", actor="ops")
    url = reverse("admin:workspaces_workspace_change", args=[workspace.pk])
    # A read-only row posts only its id and, ticked, its DELETE box, as the browser does.
    data = {**workspace_form_data(workspace), **safe_list_forms({"id": str(entry.pk), "DELETE": "on"}, initial=1)}

    response = admin_client.post(url, data)

    assert response.status_code == 302
    assert not SafeListEntry.objects.exists()
    assert the_event("safe_list.removed").actor == admin_user.username


def test_staff_without_the_safe_list_permissions_do_not_see_it(client, workspace):
    safe_list_add(workspace=workspace, prefix="+23320", note="Head office", actor="ops")
    staff_client(client, "view_workspace", "change_workspace")
    page = client.get(reverse("admin:workspaces_workspace_change", args=[workspace.pk]))
    assert page.status_code == 200 and "Head office" not in page.text
