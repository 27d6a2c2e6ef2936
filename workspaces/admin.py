"""The operators' console for workspaces, API keys and the balance ledger.

Writes that have a service go through it (issuing and revoking keys, crediting a balance); a raw
key or a key digest is never rendered, and the balance is never written from a form.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import escape, format_html

from workspaces.billing import balance_credit
from workspaces.keys import EXPIRES_IN_DAYS_MAX
from workspaces.models import ApiKey, AuditEvent, LedgerEntry, Workspace
from workspaces.services import (
    API_KEY_EDITABLE_FIELDS,
    WORKSPACE_EDITABLE_FIELDS,
    api_key_issue,
    api_key_revoke,
    api_key_update,
    parse_channels,
    parse_countries,
    workspace_add,
    workspace_update,
)
from zeckta.channels import DEFAULT_CHANNELS, Channel
from zeckta.errors import ValidationFailed
from zeckta.locales import LOCALE_ERROR, locale_normalise
from zeckta.sms_text import template_errors

# Fields of a workspace the admin form may write; balance_units is never among them.
WORKSPACE_POLICY_FIELDS = (
    "otp_reuse_enabled",
    "otp_validity_seconds",
    "otp_max_attempts",
    "otp_code_length",
    "default_message_template",
    "locale",  # the language of the texts when a request names none (API.md section 15)
)
WORKSPACE_ABUSE_FIELDS = (
    "allowed_countries",
    "destination_limit",
    "destination_window_seconds",
    "wrong_code_budget",
    "daily_sms_cap",
    "refuse_fixed_line_and_voip",
    "country_hourly_limit",
)
# The fraud guard (API.md section 13): its mode, then each rule's numbers in the order the model declares them.
WORKSPACE_FRAUD_MODE_FIELDS = ("fraud_guard_mode", "fraud_conversion_judged_after_seconds")
WORKSPACE_FRAUD_RANGE_FIELDS = (
    "fraud_range_velocity_numbers",
    "fraud_range_velocity_window_seconds",
    "fraud_range_velocity_block_seconds",
    "fraud_range_conversion_min_sessions",
    "fraud_range_conversion_max_percent",
    "fraud_range_conversion_window_seconds",
    "fraud_range_conversion_block_seconds",
)
WORKSPACE_FRAUD_COUNTRY_FIELDS = (
    "fraud_country_velocity_numbers",
    "fraud_country_velocity_window_seconds",
    "fraud_country_velocity_history_sms",
    "fraud_country_velocity_history_seconds",
    "fraud_country_velocity_block_seconds",
    "fraud_country_conversion_min_sessions",
    "fraud_country_conversion_max_percent",
    "fraud_country_conversion_window_seconds",
    "fraud_country_conversion_baseline_percent",
    "fraud_country_conversion_baseline_min_sessions",
    "fraud_country_conversion_baseline_seconds",
    "fraud_country_conversion_block_seconds",
)
WORKSPACE_FRAUD_ESCALATION_FIELDS = ("fraud_escalation_memory_seconds", "fraud_block_max_seconds")
WORKSPACE_FRAUD_FIELDS = (
    *WORKSPACE_FRAUD_MODE_FIELDS,
    *WORKSPACE_FRAUD_RANGE_FIELDS,
    *WORKSPACE_FRAUD_COUNTRY_FIELDS,
    *WORKSPACE_FRAUD_ESCALATION_FIELDS,
)
# What a workspace may spend: a postpaid one is counted and never refused, so unticking is_prepaid is as much
# a credit decision as adding units, and needs the same permission (balance_units is never a form field).
WORKSPACE_BILLING_FIELDS = ("is_prepaid",)
# Channels and their fallback (API.md section 15).
WORKSPACE_CHANNEL_FIELDS = (
    "channels",
    "fallback_after_seconds",
    "units_per_sms_segment",
    "units_per_whatsapp_message",
    "units_per_call",
)
# The drop-in doors of API.md section 14 that a workspace only gets when staff say so.
WORKSPACE_DROP_IN_FIELDS = ("relay_enabled",)
CREDIT_PERMISSION = "workspaces.credit_balance"


class WorkspaceAdminForm(forms.ModelForm):
    class Meta:
        model = Workspace
        fields = [
            "name",
            "slug",
            "is_active",
            *WORKSPACE_POLICY_FIELDS,
            *WORKSPACE_ABUSE_FIELDS,
            *WORKSPACE_FRAUD_FIELDS,
            *WORKSPACE_BILLING_FIELDS,
            *WORKSPACE_DROP_IN_FIELDS,
            *WORKSPACE_CHANNEL_FIELDS,
        ]

    # The fallback order as staff write it, `whatsapp,sms,voice`, rather than as JSON.
    channels = forms.CharField(
        initial=",".join(DEFAULT_CHANNELS),
        help_text=f"The fallback order, comma-separated, each channel once: any of {', '.join(Channel.values)}. "
        "The first send goes by the first channel with a route for the number's country (or the request's).",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Without the credit permission the billing mode is read-only (WorkspaceAdmin.get_readonly_fields): a
        # workspace added then starts prepaid at a zero balance, and can spend nothing until someone with the
        # permission credits it or makes it postpaid.
        if self.instance._state.adding and "is_prepaid" not in self.fields:
            self.instance.is_prepaid = True
        # Said here rather than in the model's help_text, which a migration would have to follow.
        if "default_message_template" in self.fields:
            self.fields["default_message_template"].help_text = escape(
                "Used when a request has no messageTemplate and the workspace has no text of its own for the "
                "purpose and language (OTP > Workspace texts), for every purpose, and only for requests in the "
                "workspace's language (its locale): it is written in that language. Must contain <OTP> once; "
                "may contain <MINUTES>."
            )
        if isinstance(self.initial.get("channels"), list):
            self.initial["channels"] = ",".join(self.initial["channels"])
        # A post from a form that predates the channel fields (or leaves them out) keeps their values.
        missing = [name for name in WORKSPACE_CHANNEL_FIELDS if self.is_bound and name not in self.data]
        if missing:
            data = dict(self.data.items())
            for name in missing:
                data[name] = self.initial.get(name, self.fields[name].initial)
            self.data = data

    def clean_channels(self) -> list[str]:
        try:
            return parse_channels(self.cleaned_data["channels"])
        except ValidationFailed as exc:
            raise forms.ValidationError(exc.message) from None

    def clean_default_message_template(self) -> str:
        template = self.cleaned_data["default_message_template"]
        if template:  # empty: each purpose's default text
            problems = template_errors(template)
            if problems:
                raise forms.ValidationError(problems)
        return template

    def clean_locale(self) -> str:
        locale = locale_normalise(self.cleaned_data["locale"])
        if locale is None:
            raise forms.ValidationError(LOCALE_ERROR)
        return locale

    def clean_allowed_countries(self) -> str:
        try:
            return parse_countries(self.cleaned_data["allowed_countries"])
        except ValidationFailed as exc:
            raise forms.ValidationError(exc.message) from None


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    fields = ("prefix", "is_test", "name", "tps", "created_at", "last_used_at", "revoked_at", "expires_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ["-created_at"]

    def has_add_permission(self, request: HttpRequest, obj: Workspace | None = None) -> bool:
        return False  # keys are issued from the API key page, which shows the raw key once

    def has_change_permission(self, request: HttpRequest, obj: Workspace | None = None) -> bool:
        return False


class CreditForm(forms.Form):
    units = forms.IntegerField(min_value=1, help_text="Units to add to each selected prepaid workspace.")
    reference = forms.CharField(max_length=100, required=False, help_text="An invoice or payment reference.")


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    form = WorkspaceAdminForm
    list_display = [
        "name",
        "slug",
        "is_active",
        "otp_reuse_enabled",
        "otp_validity_seconds",
        "otp_max_attempts",
        "is_prepaid",
        "balance_units",
        "created_at",
    ]
    list_display_links = ["name", "slug"]
    list_filter = ["is_active", "is_prepaid", "otp_reuse_enabled", "fraud_guard_mode"]
    search_fields = ["name", "slug"]
    readonly_fields = ["public_id", "account_sid", "service_sid", "balance_units", "ledger", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "is_active", "public_id"]}),
        (
            "Twilio Verify ids",
            {
                "fields": ["account_sid", "service_sid"],
                "description": "Fixed at creation. An application written against Twilio Verify uses the account id "
                "as its username (its password is one of the API keys) and the service id in its URLs.",
            },
        ),
        ("OTP policy", {"fields": list(WORKSPACE_POLICY_FIELDS)}),
        ("Destinations and abuse limits", {"fields": list(WORKSPACE_ABUSE_FIELDS)}),
        (
            "Channels",
            {
                "fields": list(WORKSPACE_CHANNEL_FIELDS),
                "description": "When a send fails for good, or nothing says it was delivered within the fallback "
                "delay, the next channel of the order not yet tried gets a fresh code. Units: what one SMS segment, "
                "one WhatsApp message and one call cost.",
            },
        ),
        (
            "Fraud guard",
            {
                "fields": list(WORKSPACE_FRAUD_MODE_FIELDS),
                "description": "Blocks a number range (a number less its last three digits) or a country whose "
                "traffic looks like SMS pumping: many codes sent, few entered. The defaults are the contract's; "
                "blocked again within the escalation memory, a block lasts twice as long as the last one.",
            },
        ),
        ("Fraud guard: range rules", {"fields": list(WORKSPACE_FRAUD_RANGE_FIELDS), "classes": ["collapse"]}),
        ("Fraud guard: country rules", {"fields": list(WORKSPACE_FRAUD_COUNTRY_FIELDS), "classes": ["collapse"]}),
        ("Fraud guard: escalation", {"fields": list(WORKSPACE_FRAUD_ESCALATION_FIELDS), "classes": ["collapse"]}),
        (
            "Billing",
            {
                "fields": [*WORKSPACE_BILLING_FIELDS, "balance_units", "ledger"],
                "description": "Prepaid or postpaid, and the balance: changed by staff with the permission to credit "
                "a prepaid balance.",
            },
        ),
        (
            "Drop-in doors",
            {
                "fields": list(WORKSPACE_DROP_IN_FIELDS),
                "description": "The SMS relay (POST /v1/messaging/sms) sends any text the workspace writes: "
                "enable it for workspaces you trust with that.",
            },
        ),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]
    inlines = [ApiKeyInline]
    actions = ["credit_balance"]

    @admin.display(description="Ledger")
    def ledger(self, obj: Workspace) -> str:
        if obj.pk is None:
            return "-"
        url = reverse("admin:workspaces_ledgerentry_changelist") + f"?workspace__id__exact={obj.pk}"
        return format_html('<a href="{}">{} ledger entries</a>', url, obj.ledger_entries.count())

    def save_model(self, request: HttpRequest, obj: Workspace, form: forms.ModelForm, change: bool) -> None:
        if not change:
            workspace_add(workspace=obj, actor=request.user.get_username())
            return
        # Through the service: only what the form changed is written (never the balance), and audited.
        values = {name: form.cleaned_data[name] for name in form.changed_data if name in WORKSPACE_EDITABLE_FIELDS}
        if values:
            workspace_update(workspace=obj, values=values, actor=request.user.get_username())

    def has_credit_permission(self, request: HttpRequest) -> bool:
        """Adding money is its own permission (workspaces.credit_balance), not part of editing a policy; so is
        choosing the billing mode."""
        return request.user.has_perm(CREDIT_PERMISSION)

    def get_readonly_fields(self, request: HttpRequest, obj: Workspace | None = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        # Read-only fields are left out of the form: a posted is_prepaid is then ignored, on add and change alike.
        return fields if self.has_credit_permission(request) else [*fields, *WORKSPACE_BILLING_FIELDS]

    @admin.action(description="Credit balance", permissions=["credit"])
    def credit_balance(self, request: HttpRequest, queryset: QuerySet[Workspace]) -> HttpResponse | None:
        form = CreditForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            actor = request.user.get_username()
            for workspace in queryset:
                if not workspace.is_prepaid:
                    message = f"Skipped {workspace.slug}: it is postpaid and has no balance to credit."
                    self.message_user(request, message, messages.ERROR)
                    continue
                balance = balance_credit(
                    workspace=workspace,
                    units=form.cleaned_data["units"],
                    actor=actor,
                    reference=form.cleaned_data["reference"],
                )
                message = f"Credited {workspace.slug}: the balance is now {balance}."
                self.message_user(request, message, messages.SUCCESS)
            return None
        return TemplateResponse(
            request,
            "admin/action_form.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "Credit balance",
                "intro": "Add units to the balance of these workspaces (postpaid ones are skipped):",
                "queryset": queryset,
                "form": form,
                "action": "credit_balance",
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
                "submit_label": "Credit",
            },
        )


class RevokedFilter(admin.SimpleListFilter):
    title = "revoked"
    parameter_name = "revoked"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Revoked"), ("no", "Live")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        if self.value() in ("yes", "no"):
            return queryset.filter(revoked_at__isnull=self.value() == "no")
        return queryset


class ApiKeyAddForm(forms.ModelForm):
    expires_in_days = forms.IntegerField(
        min_value=1, max_value=EXPIRES_IN_DAYS_MAX, required=False, help_text="Empty: the key never expires."
    )
    test = forms.BooleanField(
        required=False,
        label="Test key",
        help_text="A zk_test_ key: no SMS is sent (each goes to the workspace's test inbox), "
        "nothing is charged, and it sees only the sessions of test keys.",
    )

    class Meta:
        model = ApiKey
        fields = ["workspace", "name", "tps"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "workspace", "name", "mode", "tps", "created_at", "last_used_at", "expires_at", "revoked"]
    list_filter = ["workspace", RevokedFilter, "is_test"]
    list_select_related = ["workspace"]
    search_fields = ["prefix", "name", "workspace__slug"]
    # The digest is in no field list, form or column.
    exclude = ["digest"]
    readonly_fields = ["public_id", "prefix", "workspace", "is_test", "created_at", "last_used_at", "revoked_at"]
    fields = (
        "public_id",
        "prefix",
        "workspace",
        "is_test",
        "name",
        "tps",
        "expires_at",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    actions = ["revoke_selected"]

    @admin.display(boolean=True, description="revoked", ordering="revoked_at")
    def revoked(self, obj: ApiKey) -> bool:
        return obj.is_revoked

    @admin.display(description="mode", ordering="is_test")
    def mode(self, obj: ApiKey) -> str:
        return obj.mode

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        return ("workspace", "name", "tps", "expires_in_days", "test") if obj is None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        return [] if obj is None else self.readonly_fields

    def get_form(self, request: HttpRequest, obj: ApiKey | None = None, change: bool = False, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
            kwargs["fields"] = ["workspace", "name", "tps"]
        return super().get_form(request, obj, change=change, **kwargs)

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False  # revoke instead: the row says which key made which calls

    def save_model(self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm, change: bool) -> None:
        if change:
            values = {name: form.cleaned_data[name] for name in form.changed_data if name in API_KEY_EDITABLE_FIELDS}
            if values:
                api_key_update(api_key=obj, values=values, actor=request.user.get_username())
            return
        issued = api_key_issue(
            workspace=form.cleaned_data["workspace"],
            name=form.cleaned_data["name"],
            tps=form.cleaned_data["tps"],
            expires_in_days=form.cleaned_data["expires_in_days"],
            test=form.cleaned_data["test"],
            actor=request.user.get_username(),
        )
        # `obj` is the form's unsaved instance and the admin logs and redirects with it: make it the
        # service's row, so that no second row is written.
        for field in ApiKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(issued.api_key, field.attname))
        obj._state.adding = False
        obj._state.db = issued.api_key._state.db
        # Handed to response_add on the request itself: it lives as long as this one response.
        # HttpRequest declares no such attribute; it is ours, read back with getattr.
        request._issued_raw_key = issued.raw_key  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> HttpResponse:
        raw_key = getattr(request, "_issued_raw_key", None)
        if raw_key is None:
            return super().response_add(request, obj, post_url_continue)
        # The key is rendered in this response only: not stored in the session or a message cookie.
        response = TemplateResponse(
            request,
            "admin/workspaces/apikey/issued.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "API key issued",
                "api_key": obj,
                "raw_key": raw_key,
            },
        )
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        actor = request.user.get_username()
        prefixes = [
            api_key_revoke(prefix=prefix, actor=actor).prefix for prefix in queryset.values_list("prefix", flat=True)
        ]
        self.message_user(request, f"Revoked {len(prefixes)} key(s): {', '.join(prefixes)}.", messages.SUCCESS)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    """Read-only: balances change through the billing service, each change leaving one row here."""

    list_display = ["created_at", "workspace", "delta_units", "balance_after", "reason", "reference", "actor"]
    list_filter = ["workspace", "reason"]
    list_select_related = ["workspace"]
    # A prepaid workspace writes a row per SMS: newest first by id (the primary key, no sort of every row),
    # and no second count of the whole table on each page.
    ordering = ["-id"]
    show_full_result_count = False
    search_fields = ["reference", "actor", "workspace__slug"]
    fields = ("workspace", "delta_units", "balance_after", "reason", "reference", "actor", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: LedgerEntry | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: LedgerEntry | None = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only for everyone, superusers included: audit rows are written by the services, never by hand."""

    list_display = ["created_at", "actor", "action", "workspace_slug", "target"]
    list_filter = ["action", "workspace"]
    search_fields = ["actor", "target", "workspace_slug"]
    fields = ("created_at", "actor", "action", "workspace", "workspace_slug", "target", "detail")
    readonly_fields = fields
    show_full_result_count = False  # the trail only grows: no COUNT(*) over all of it on every page

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False
