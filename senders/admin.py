"""Sender names: staff approve or reject what workspaces ask to send from, through the sender services."""

import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from senders.errors import SenderNameExists
from senders.models import Route, SenderName
from senders.routes import (
    RECEIPT_PATH,
    route_create,
    route_receipt_url_problem,
    route_settings_problem,
    route_settings_replace,
    routes_changed,
)
from senders.selectors import live_sender_names
from senders.services import (
    sender_name_approve,
    sender_name_create,
    sender_name_describe,
    sender_name_make_default,
    sender_name_problem,
    sender_name_reject,
)
from workspaces.services import parse_countries
from zeckta.errors import ValidationFailed


class SenderNameAddForm(forms.ModelForm):
    approve = forms.BooleanField(required=False, help_text="Approve it at once.")

    class Meta:
        model = SenderName
        fields = ["workspace", "name", "sender_type", "purpose", "country_code"]

    def clean(self) -> dict:
        super().clean()
        cleaned = self.cleaned_data  # the dict ModelForm.clean returns; its stub allows None
        name, sender_type = cleaned.get("name"), cleaned.get("sender_type")
        if name and sender_type:
            problem = sender_name_problem(name, sender_type)
            if problem:
                self.add_error("name", problem)
        workspace = cleaned.get("workspace")
        # The unique constraint covers live names only (a deleted one may be requested again), which
        # the form's own constraint check cannot see: ask the same question the service's insert will.
        if name and workspace and live_sender_names(workspace).filter(name=name).exists():
            self.add_error("name", SenderNameExists(name).message)
        return cleaned


class RejectForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Kept on each sender name and shown to its workspace.",
    )

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("A rejection needs a reason.")
        return reason


@admin.register(SenderName)
class SenderNameAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "workspace",
        "sender_type",
        "status",
        "country_code",
        "submitted_at",
        "approved_at",
        "is_default",
        "deleted_at",
    ]
    list_filter = ["status", "sender_type", ("deleted_at", admin.EmptyFieldListFilter), "workspace"]
    list_select_related = ["workspace"]
    search_fields = ["name", "workspace__slug"]
    fields = (
        "public_id",
        "workspace",
        "name",
        "sender_type",
        "purpose",
        "country_code",
        "status",
        "status_reason",
        "submitted_at",
        "approved_at",
        "is_default",
        "updated_at",
        "deleted_at",
    )
    # Status changes only through the approve/reject actions; the name itself never changes once submitted.
    readonly_fields = [
        "public_id",
        "workspace",
        "name",
        "sender_type",
        "status",
        "status_reason",
        "submitted_at",
        "approved_at",
        "is_default",
        "updated_at",
        "deleted_at",
    ]
    actions = ["approve_selected", "reject_selected", "make_default"]

    def get_fields(self, request: HttpRequest, obj: SenderName | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("workspace", "name", "sender_type", "purpose", "country_code", "approve")
        return self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: SenderName | None = None) -> list[str]:
        return [] if obj is None else self.readonly_fields

    def get_form(self, request: HttpRequest, obj: SenderName | None = None, change: bool = False, **kwargs):
        if obj is None:
            kwargs["form"] = SenderNameAddForm
            kwargs["fields"] = SenderNameAddForm.Meta.fields
        return super().get_form(request, obj, change=change, **kwargs)

    def save_model(self, request: HttpRequest, obj: SenderName, form: forms.ModelForm, change: bool) -> None:
        if change:
            if {"purpose", "country_code"} & set(form.changed_data):
                sender_name_describe(
                    sender_name=obj,
                    purpose=form.cleaned_data["purpose"],
                    country_code=form.cleaned_data["country_code"],
                    actor=request.user.get_username(),
                )
            return
        data = form.cleaned_data
        created = sender_name_create(
            workspace=data["workspace"],
            name=data["name"],
            sender_type=data["sender_type"],
            purpose=data["purpose"],
            country_code=data["country_code"],
            approve=data["approve"],
            actor=request.user.get_username(),
        )
        # The admin logs and redirects with `obj`: make it the service's row rather than save a second one.
        for field in SenderName._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))
        obj._state.adding = False
        obj._state.db = created._state.db

    @admin.action(description="Approve selected sender names", permissions=["change"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[SenderName]) -> None:
        actor = request.user.get_username()
        # A name its workspace deleted stays deleted: it is listed for the record, never approved again.
        approved = [
            sender_name_approve(sender_name=sender_name, actor=actor).name
            for sender_name in queryset.filter(deleted_at__isnull=True)
        ]
        self.message_user(request, f"Approved {len(approved)} sender name(s): {', '.join(approved)}.", messages.SUCCESS)

    @admin.action(description="Make the workspace's default sender (one name)", permissions=["change"])
    def make_default(self, request: HttpRequest, queryset: QuerySet[SenderName]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one sender name.", messages.ERROR)
            return
        try:
            made = sender_name_make_default(sender_name=queryset.get(), actor=request.user.get_username())
        except ValidationFailed as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(request, f"{made.name} is now the default sender of {made.workspace}.", messages.SUCCESS)

    @admin.action(description="Reject selected sender names", permissions=["change"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet[SenderName]) -> HttpResponse | None:
        form = RejectForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            actor, reason = request.user.get_username(), form.cleaned_data["reason"]
            rejected = [
                sender_name_reject(sender_name=sender_name, reason=reason, actor=actor).name
                for sender_name in queryset.filter(deleted_at__isnull=True)
            ]
            self.message_user(
                request, f"Rejected {len(rejected)} sender name(s): {', '.join(rejected)}.", messages.SUCCESS
            )
            return None
        return TemplateResponse(
            request,
            "admin/action_form.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "Reject sender names",
                "intro": "Reject these sender names. The reason is required and kept on each of them:",
                "queryset": queryset.select_related("workspace"),
                "form": form,
                "action": "reject_selected",
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
                "submit_label": "Reject",
            },
        )


class WriteOnlyJSONField(forms.JSONField):
    """Starts empty: a JSONField would show its empty value as `null`, which reads like a setting."""

    def prepare_value(self, value: object) -> str:
        return "" if value is None else super().prepare_value(value)


class RouteForm(forms.ModelForm):
    """Settings are write-only: the form never shows them; JSON typed here replaces them all."""

    new_settings = WriteOnlyJSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text='The backend\'s settings as JSON, e.g. {"account_sid": "AC...", "auth_token": "..."}. '
        "Stored encrypted and never shown again; leave empty to keep the current ones.",
    )

    class Meta:
        model = Route
        fields = ["name", "backend", "countries", "priority", "rate_per_second", "enabled"]

    def clean_countries(self) -> str:
        try:
            return parse_countries(self.cleaned_data["countries"])
        except ValidationFailed as exc:
            raise forms.ValidationError(exc.message) from None

    def clean(self) -> dict:
        cleaned = super().clean() or {}
        values = cleaned.get("new_settings")
        if values is not None and not isinstance(values, dict):
            self.add_error("new_settings", "A JSON object of setting names and values.")
        elif values is None and self.instance.pk is not None and "backend" in self.changed_data:
            self.add_error("new_settings", "A new backend needs its own settings.")
        elif values is not None or self.instance.pk is None:
            problem = route_settings_problem(cleaned.get("backend") or self.instance.backend, values or {})
            if problem:
                self.add_error("new_settings", problem)
        backend = cleaned.get("backend")
        if backend:
            # A new route gets its id in route_create: any one has the same length, so the same verdict.
            route_key = str(self.instance.public_id if self.instance.pk is not None else uuid.uuid4())
            problem = route_receipt_url_problem(backend, route_key)
            if problem:
                self.add_error("backend", problem)
        return cleaned


@admin.register(Route)
class RouteAdmin(admin.ModelAdmin):
    form = RouteForm
    list_display = ["name", "backend", "countries_shown", "priority", "rate_per_second", "enabled", "receipt_path"]
    list_filter = ["backend", "enabled"]
    search_fields = ["name", "countries"]
    readonly_fields = ["public_id", "receipt_path", "created_at", "updated_at"]
    fields = [
        "name",
        "backend",
        "new_settings",
        "countries",
        "priority",
        "rate_per_second",
        "enabled",
        "public_id",
        "receipt_path",
        "created_at",
        "updated_at",
    ]

    @admin.display(description="countries")
    def countries_shown(self, obj: Route) -> str:
        return obj.countries or "all"

    @admin.display(description="receipt URL path")
    def receipt_path(self, obj: Route) -> str:
        return f"{RECEIPT_PATH}{obj.public_id}" if obj.pk else "-"

    def save_model(self, request: HttpRequest, obj: Route, form: forms.ModelForm, change: bool) -> None:
        actor = request.user.get_username()
        values = form.cleaned_data.get("new_settings")
        if not change:
            created = route_create(
                name=obj.name,
                backend=obj.backend,
                values=values or {},
                countries=obj.countries,
                priority=obj.priority,
                rate_per_second=obj.rate_per_second,
                enabled=obj.enabled,
                actor=actor,
            )
            for field in Route._meta.concrete_fields:
                setattr(obj, field.attname, getattr(created, field.attname))
            obj._state.adding = False
            obj._state.db = created._state.db
            return
        fields = [name for name in form.changed_data if name in RouteForm.Meta.fields]
        if fields:
            obj.save(update_fields=[*fields, "updated_at"])
            routes_changed()
        if values is not None:
            route_settings_replace(route=obj, values=values, actor=actor)
