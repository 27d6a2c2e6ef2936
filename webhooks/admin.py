"""Webhook endpoints and their deliveries, for staff: every write goes through `webhooks.services`.

A secret is never rendered, except once, in the answer to the form that created the endpoint; lists
show its prefix (`whsec_` and four characters) to tell secrets apart.
"""

import logging

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from webhooks.models import Event, WebhookDelivery, WebhookEndpoint
from webhooks.services import (
    events_problem,
    webhook_delivery_replay,
    webhook_endpoint_clear_failing,
    webhook_endpoint_create,
    webhook_endpoint_delete,
)
from webhooks.transport import url_problem

logger = logging.getLogger(__name__)

RECENT_DELIVERIES = 20  # shown on an endpoint's page; the deliveries list has them all


class WebhookEndpointAddForm(forms.ModelForm):
    events = forms.MultipleChoiceField(choices=Event.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = WebhookEndpoint
        fields = ["workspace", "url", "events"]

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        problem = url_problem(url)
        if problem:
            raise forms.ValidationError(problem)
        return url

    def clean_events(self) -> list[str]:
        events = list(self.cleaned_data["events"])
        problem = events_problem(events)
        if problem:
            raise forms.ValidationError(problem)
        return events


class FailingFilter(admin.SimpleListFilter):
    title = "failing"
    parameter_name = "failing"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in ("yes", "no"):
            return queryset.filter(failing_since__isnull=self.value() == "no")
        return queryset


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["url", "workspace", "is_test", "events_shown", "failing_shown", "created_at"]
    list_filter = [FailingFilter, "is_test", "workspace"]
    list_select_related = ["workspace"]
    search_fields = ["url", "workspace__slug", "workspace__name"]
    fields = (
        "public_id",
        "workspace",
        "is_test",
        "url",
        "events_shown",
        "secret_prefix",
        "previous_secret_expires_at",
        "failing_since",
        "created_at",
        "updated_at",
        "recent_deliveries",
    )
    # Changed only through the services: the API's rotation, the actions below, delete.
    readonly_fields = fields
    actions = ["mark_not_failing", "delete_selected_endpoints"]

    def get_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> tuple[str, ...]:
        return tuple(WebhookEndpointAddForm.Meta.fields) if obj is None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> tuple[str, ...]:
        return () if obj is None else self.readonly_fields

    def get_form(self, request: HttpRequest, obj: WebhookEndpoint | None = None, change: bool = False, **kwargs):
        if obj is None:
            kwargs["form"] = WebhookEndpointAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # deletes without the service: no audit row
        return actions

    @admin.display(description="events")
    def events_shown(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.events)

    @admin.display(description="failing", boolean=True)
    def failing_shown(self, obj: WebhookEndpoint) -> bool:
        return obj.failing

    @admin.display(description="recent deliveries")
    def recent_deliveries(self, obj: WebhookEndpoint) -> str:
        deliveries = list(obj.deliveries.order_by("-created_at", "-pk")[:RECENT_DELIVERIES])
        if not deliveries:
            return "None yet."
        url = reverse("admin:webhooks_webhookdelivery_changelist") + f"?endpoint__id__exact={obj.pk}"
        rows = format_html_join(
            "",
            "<tr><td><a href='{}'>{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td><td>{}</td></tr>",
            (
                (
                    reverse("admin:webhooks_webhookdelivery_change", args=[d.pk]),
                    d.webhook_id,
                    d.event_type,
                    d.status,
                    d.attempts,
                    d.last_status_code or "-",
                    d.last_error or "-",
                    d.created_at,
                    d.finished_at or d.next_attempt_at,
                )
                for d in deliveries
            ),
        )
        return format_html(
            "<table><tr><th>webhook-id</th><th>event</th><th>status</th><th>attempts</th><th>last HTTP status</th>"
            "<th>last error</th><th>recorded</th><th>finished / next attempt</th></tr>{}</table>"
            "<p><a href='{}'>All deliveries of this endpoint</a></p>",
            rows,
            url,
        )

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: forms.ModelForm, change: bool) -> None:
        if change:
            return  # every field is read-only once created
        data = form.cleaned_data
        created = webhook_endpoint_create(
            workspace=data["workspace"], url=data["url"], events=data["events"], actor=request.user.get_username()
        )
        # The admin logs and redirects with `obj`: make it the service's row rather than save a second one.
        for field in WebhookEndpoint._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created.endpoint, field.attname))
        obj._state.adding = False
        obj._state.db = created.endpoint._state.db
        # Handed to response_add on the request itself: it lives as long as this one response.
        request._webhook_secret = created.secret  # type: ignore[attr-defined]

    def response_add(
        self, request: HttpRequest, obj: WebhookEndpoint, post_url_continue: str | None = None
    ) -> HttpResponse:
        secret = getattr(request, "_webhook_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        # The secret is rendered in this response only: not stored in the session or a message cookie.
        response = TemplateResponse(
            request,
            "admin/webhooks/webhookendpoint/created.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "Webhook endpoint created",
                "endpoint": obj,
                "secret": secret,
            },
        )
        response["Cache-Control"] = "no-store"
        return response

    def delete_model(self, request: HttpRequest, obj: WebhookEndpoint) -> None:
        webhook_endpoint_delete(
            workspace=obj.workspace, webhook_id=obj.public_id, test=obj.is_test, actor=request.user.get_username()
        )

    @admin.action(description="Mark selected endpoints not failing", permissions=["change"])
    def mark_not_failing(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        actor = request.user.get_username()
        cleared = sum(webhook_endpoint_clear_failing(endpoint=endpoint, actor=actor) for endpoint in queryset)
        self.message_user(request, f"{cleared} endpoint(s) marked not failing.", messages.SUCCESS)

    @admin.action(description="Delete selected endpoints (and their deliveries)", permissions=["delete"])
    def delete_selected_endpoints(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        actor = request.user.get_username()
        endpoints = list(queryset.select_related("workspace"))
        for endpoint in endpoints:
            webhook_endpoint_delete(
                workspace=endpoint.workspace, webhook_id=endpoint.public_id, test=endpoint.is_test, actor=actor
            )
        self.message_user(request, f"Deleted {len(endpoints)} endpoint(s).", messages.SUCCESS)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "webhook_id",
        "event_type",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "created_at",
        "next_attempt_at",
        "finished_at",
    ]
    list_filter = ["status", "event_type"]
    list_select_related = ["endpoint"]
    search_fields = ["public_id", "endpoint__url", "endpoint__workspace__slug"]
    fields = (
        "webhook_id",
        "endpoint",
        "event_type",
        "event_at",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "created_at",
        "next_attempt_at",
        "claimed_at",
        "retry_until",
        "finished_at",
        "body",
    )
    readonly_fields = fields
    actions = ["replay"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # deliveries are what events make

    def has_change_permission(self, request: HttpRequest, obj: WebhookDelivery | None = None) -> bool:
        return False

    def has_replay_permission(self, request: HttpRequest) -> bool:
        """Sending again is a change, though the row's fields are not editable."""
        return request.user.has_perm("webhooks.change_webhookdelivery")

    @admin.action(description="Replay selected deliveries (same body and webhook-id)", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        actor = request.user.get_username()
        replayed = [
            delivery.webhook_id for delivery in queryset if webhook_delivery_replay(delivery=delivery, actor=actor)
        ]
        skipped = queryset.count() - len(replayed)
        note = f" {skipped} still under way, left as they are." if skipped else ""
        self.message_user(request, f"Replaying {len(replayed)} delivery(ies).{note}", messages.SUCCESS)
