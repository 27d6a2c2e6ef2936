"""OTP sessions and the SMS outbox, for looking things up: read-only, and never the code digest or the SMS text.
Reviewer numbers, kept by staff through the services (audited; their fixed code is write-only). Each
workspace's own texts per purpose and locale."""

import uuid
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from otp.models import OtpSession, Purpose, ReviewerNumber, SmsAttempt, SmsMessage, WorkspaceText
from otp.templating import TRANSACTION_DETAILS, default_template
from otp.testmode import (
    REVIEWER_NUMBER_EDITABLE_FIELDS,
    REVIEWER_NUMBER_EXISTS,
    reviewer_code_problem,
    reviewer_dest_problem,
    reviewer_number_add,
    reviewer_number_delete,
    reviewer_number_update,
)
from senders.models import Route
from senders.routes import DEFAULT_ROUTE_KEY
from zeckta import sms_text
from zeckta.locales import LOCALE_ERROR, locale_normalise


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the OTP services only; staff may look, not add, edit or delete."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def _search(queryset: QuerySet, term: str, *, destination_field: str, id_filter) -> QuerySet:
    """A UUID finds by id (an index lookup); anything else matches part of the destination number."""
    term = term.strip()
    if not term:
        return queryset
    try:
        return queryset.filter(id_filter(uuid.UUID(term)))
    except ValueError:
        return queryset.filter(**{f"{destination_field}__contains": term})


class CreatedWithinFilter(admin.SimpleListFilter):
    """Recent sessions by their `created_at` index. In place of a date hierarchy, whose list of years and months
    is a scan of the whole table on every page (a quarter of a second at a million sessions)."""

    title = "created"
    parameter_name = "created_within"
    WINDOWS = {
        "1h": ("in the last hour", timedelta(hours=1)),
        "24h": ("in the last 24 hours", timedelta(hours=24)),
        "7d": ("in the last 7 days", timedelta(days=7)),
    }

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _) in self.WINDOWS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        window = self.WINDOWS.get(self.value() or "")
        return queryset.filter(created_at__gte=timezone.now() - window[1]) if window else queryset


class RouteNameFilter(admin.SimpleListFilter):
    """The routes an SMS can take, listed from the routes themselves: not a DISTINCT over every SMS."""

    title = "route"
    parameter_name = "route"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        names = list(Route.objects.order_by("priority", "name").values_list("name", flat=True))
        return [(name, name) for name in [*names, DEFAULT_ROUTE_KEY]]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(route_name=self.value()) if self.value() else queryset


@admin.register(OtpSession)
class OtpSessionAdmin(ReadOnlyAdmin):
    list_display = [
        "public_id",
        "workspace",
        "dest",
        "country",
        "src",
        "purpose",
        "status",
        "attempts",
        "resends",
        "is_test",
        "created_at",
        "verified_at",
    ]
    list_filter = [CreatedWithinFilter, "status", "purpose", "is_test", "workspace"]
    list_select_related = ["workspace"]
    search_fields = ["dest"]  # shows the search box; get_search_results decides how a term is matched
    search_help_text = "A phone number (or part of one), or a session id."
    # Each page would count the whole table a second time for "N total": not with a million sessions.
    show_full_result_count = False
    # code_digest is deliberately in no list: not even its HMAC is shown.
    fields = (
        "public_id",
        "workspace",
        "is_test",
        "sender_name",
        "dest",
        "country",
        "src",
        "purpose",
        "status",
        "attempts_used",
        "max_attempts",
        "resends",
        "created_at",
        "expires_at",
        "verified_at",
        "sms_and_attempts",
    )
    readonly_fields = fields
    exclude = ["code_digest"]

    @admin.display(description="attempts (used/max)")
    def attempts(self, obj: OtpSession) -> str:
        return f"{obj.attempts_used}/{obj.max_attempts}"

    @admin.display(description="SMS and delivery attempts")
    def sms_and_attempts(self, obj: OtpSession) -> str:
        """Every SMS of the session (the first send, then each resend), each with its calls to providers."""
        messages = list(
            SmsMessage.objects.filter(session=obj)
            .defer("encrypted_text")
            .order_by("id")
            .prefetch_related("attempt_log")
        )
        if not messages:
            return "No SMS: a reviewer number's session sends none." if not obj.is_test else "-"
        return format_html_join("", "{}", ((sms_summary(message),) for message in messages))

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        return _search(
            queryset, search_term, destination_field="dest", id_filter=lambda value: Q(public_id=value)
        ), False


class SmsAttemptInline(admin.TabularInline):
    """Every call to a provider for this SMS, with what the provider said."""

    model = SmsAttempt
    fields = (
        "started_at",
        "route_name",
        "status",
        "provider_message_id",
        "provider_status",
        "error_code",
        "error",
        "finished_at",
        "receipt_at",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def _time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def attempts_table(message: SmsMessage) -> str:
    """The calls to providers for one SMS, with what each provider answered and its receipt."""
    attempts = message.attempt_log.all()
    if not attempts:
        return mark_safe("<p class='quiet'>No call to a provider yet.</p>")  # noqa: S308 (a constant)
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                _time(a.started_at),
                a.route_name,
                a.status,
                a.provider_message_id or "-",
                a.provider_status or "-",
                a.error_code or "-",
                a.error or "-",
                _time(a.receipt_at),
            )
            for a in attempts
        ),
    )
    return format_html(
        "<table><tr><th>started</th><th>route</th><th>status</th><th>provider id</th>"
        "<th>provider status</th><th>error code</th><th>error</th><th>receipt</th></tr>{}</table>",
        rows,
    )


def sms_summary(message: SmsMessage) -> str:
    """One SMS of a session: its status, route, cost and times, then its attempts."""
    link = reverse("admin:otp_smsmessage_change", args=[message.pk])
    return format_html(
        "<div class='otp-sms'><p><a href='{}'>SMS {}</a> <strong>{}</strong> via {} &middot; {} segment(s), {} unit(s)"
        " &middot; written {} &middot; delivered {}{}</p>{}</div>",
        link,
        message.public_id,
        message.status,
        message.route_name or "-",
        message.segments,
        message.units,
        _time(message.created_at),
        _time(message.delivered_at),
        format_html(" &middot; <span class='errornote-inline'>{}</span>", message.last_error)
        if message.last_error
        else "",
        attempts_table(message),
    )


class RelayedFilter(admin.SimpleListFilter):
    """OTP SMS (a session's) or relayed ones (POST /v1/messaging/sms, no session)."""

    title = "kind"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("otp", "OTP"), ("relayed", "relayed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "otp":
            return queryset.filter(session__isnull=False)
        if self.value() == "relayed":
            return queryset.filter(session__isnull=True)
        return queryset


@admin.register(SmsMessage)
class SmsMessageAdmin(ReadOnlyAdmin):
    list_display = [
        "reference_id",
        "to",
        "country",
        "src",
        "status",
        "channel",
        "route_name",
        "segments",
        "units",
        "attempts",
        "provider_message_id",
        "created_at",
        "delivered_at",
    ]
    # No date hierarchy and no filter by encoding: each would scan every SMS on every page.
    list_filter = ["status", "channel", RouteNameFilter, "is_test", RelayedFilter, "workspace"]
    show_full_result_count = False  # see OtpSessionAdmin
    # Newest first by id (ids follow time): the primary key, where -created_at would sort every SMS row.
    ordering = ["-id"]
    search_fields = ["to"]  # see get_search_results
    search_help_text = "A phone number (or part of one), a reference id or a session id."
    # encrypted_text (the SMS, with its code) is deliberately in no list.
    inlines = [SmsAttemptInline]
    fields = (
        "reference_id",
        "session_link",
        "workspace",
        "is_test",
        "to",
        "country",
        "src",
        "status",
        "route_name",
        "delivered_at",
        "encoding",
        "segments",
        "units",
        "attempts",
        "provider_message_id",
        "last_error",
        "next_attempt_at",
        "claimed_at",
        "created_at",
        "updated_at",
        "finished_at",
    )
    readonly_fields = fields
    exclude = ["encrypted_text"]

    @admin.display(description="session")
    def session_link(self, obj: SmsMessage) -> str:
        if obj.session is None:
            purpose = f" ({obj.purpose})" if obj.purpose else ""
            return f"None: relayed (POST /v1/messaging/sms){purpose}, not sent after {_time(obj.send_before)}"
        return format_html(
            "<a href='{}'>{}</a>", reverse("admin:otp_otpsession_change", args=[obj.session_id]), obj.session.public_id
        )

    @admin.display(description="reference id", ordering="public_id")
    def reference_id(self, obj: SmsMessage) -> str:
        return str(obj.public_id)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # encrypted_text is never needed here: do not even read it from the database.
        return super().get_queryset(request).defer("encrypted_text")

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        return _search(
            queryset,
            search_term,
            destination_field="to",
            id_filter=lambda value: Q(public_id=value) | Q(session__public_id=value),
        ), False


class ReviewerNumberForm(forms.ModelForm):
    """The fixed code is write-only: never rendered back, not even masked; empty on a change keeps it."""

    code = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        label="Fixed code",
        help_text="4 to 10 digits. Stored encrypted and never shown again; on a change, leave empty to keep it.",
    )

    class Meta:
        model = ReviewerNumber
        fields = ["workspace", "dest", "note", "enabled"]

    def clean_dest(self) -> str:
        dest = self.cleaned_data["dest"]
        problem = reviewer_dest_problem(dest)
        if problem:
            raise forms.ValidationError(problem)
        workspace = self.cleaned_data.get("workspace") or getattr(self.instance, "workspace", None)
        others = ReviewerNumber.objects.filter(workspace=workspace, dest=dest).exclude(pk=self.instance.pk)
        if workspace is not None and others.exists():
            raise forms.ValidationError(REVIEWER_NUMBER_EXISTS)
        return dest

    def clean_code(self) -> str:
        code = self.cleaned_data["code"]
        if not code and self.instance.pk is None:
            raise forms.ValidationError("A reviewer number needs its fixed code.")
        problem = reviewer_code_problem(code) if code else None
        if problem:
            raise forms.ValidationError(problem)
        return code


@admin.register(ReviewerNumber)
class ReviewerNumberAdmin(admin.ModelAdmin):
    """Numbers that get a fixed code and no SMS (app-store reviews). Every add, change and delete goes through
    the services, which audit it; each use is audited too."""

    form = ReviewerNumberForm
    list_display = ["dest", "workspace", "enabled", "note", "created_by", "created_at", "updated_at"]
    list_filter = ["enabled", "workspace"]
    list_select_related = ["workspace"]
    search_fields = ["dest", "note", "workspace__slug"]
    fields = ["workspace", "dest", "code", "note", "enabled", "created_by", "created_at", "updated_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: ReviewerNumber | None = None) -> list[str]:
        history = ["created_by", "created_at", "updated_at"]
        return history if obj is None else ["workspace", *history]

    def save_model(self, request: HttpRequest, obj: ReviewerNumber, form: forms.ModelForm, change: bool) -> None:
        actor = request.user.get_username()
        data: dict[str, Any] = form.cleaned_data
        if change:
            values = {name: data[name] for name in form.changed_data if name in REVIEWER_NUMBER_EDITABLE_FIELDS}
            if values or data["code"]:
                reviewer_number_update(reviewer_number=obj, values=values, code=data["code"] or None, actor=actor)
            return
        added = reviewer_number_add(
            workspace=data["workspace"],
            dest=data["dest"],
            code=data["code"],
            note=data["note"],
            enabled=data["enabled"],
            actor=actor,
        )
        # The admin logs and redirects with `obj`: make it the service's row rather than save a second one.
        for field in ReviewerNumber._meta.concrete_fields:
            setattr(obj, field.attname, getattr(added, field.attname))
        obj._state.adding, obj._state.db = False, added._state.db

    def delete_model(self, request: HttpRequest, obj: ReviewerNumber) -> None:
        reviewer_number_delete(reviewer_number=obj, actor=request.user.get_username())

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ReviewerNumber]) -> None:
        for number in queryset.select_related("workspace"):
            reviewer_number_delete(reviewer_number=number, actor=request.user.get_username())


# What a workspace text is shown rendered with: a code of the workspace's length, its validity, and for
# TRANSACTION a sample amount and payee, so that staff see the SMS a client gets and what it costs.
SAMPLE_DIGITS = "4829137560"
SAMPLE_AMOUNT, SAMPLE_PAYEE = "GHS 125.50", "Acme Shop"


class WorkspaceTextForm(forms.ModelForm):
    class Meta:
        model = WorkspaceText
        fields = ["workspace", "purpose", "locale", "text"]
        widgets = {"text": forms.Textarea(attrs={"rows": 3, "cols": 80})}

    def clean_locale(self) -> str:
        locale = locale_normalise(self.cleaned_data["locale"])
        if locale is None:
            raise forms.ValidationError(LOCALE_ERROR)
        return locale

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        text, purpose = data.get("text"), data.get("purpose")
        if text is not None and purpose is not None:
            # As the workspace's default template and a request's messageTemplate are checked; only a
            # TRANSACTION text may name the amount and the payee.
            problems = sms_text.template_errors(text, transaction=purpose == Purpose.TRANSACTION)
            if problems:
                self.add_error("text", problems)
        return data


@admin.register(WorkspaceText)
class WorkspaceTextAdmin(admin.ModelAdmin):
    """A workspace's own text for a purpose in a language (API.md section 15). The order in which a request
    picks a text is otp.templating's; requests see a change within LOCAL_CACHE_SECONDS."""

    form = WorkspaceTextForm
    list_display = ["workspace", "purpose", "locale", "text", "sms", "updated_at"]
    list_filter = ["workspace", "purpose", "locale"]
    list_select_related = ["workspace"]
    search_fields = ["text", "locale", "workspace__slug", "workspace__name"]
    fields = ["workspace", "purpose", "locale", "text", "rendered", "service_default", "created_at", "updated_at"]
    readonly_fields = ["rendered", "service_default", "created_at", "updated_at"]

    @admin.display(description="SMS")
    def sms(self, obj: WorkspaceText) -> str:
        encoding, segments = self._segments(obj)
        return f"{encoding}, {segments} segment{'s' if segments != 1 else ''}"

    @admin.display(description="Rendered (sample code)")
    def rendered(self, obj: WorkspaceText) -> str:
        if obj.pk is None:
            return "Shown once saved."
        text = self._sample(obj)
        encoding, segments = self._segments(obj)
        return format_html(
            "<pre>{}</pre>{} characters, {}, {} segment(s) (units per SMS segment apply)",
            text,
            len(text),
            encoding,
            segments,
        )

    @admin.display(description="The service's text for this purpose and locale")
    def service_default(self, obj: WorkspaceText) -> str:
        if obj.pk is None:
            return "-"
        name = TRANSACTION_DETAILS if sms_text.AMOUNT_PLACEHOLDER in obj.text else obj.purpose
        return default_template(name, obj.locale)

    def _sample(self, obj: WorkspaceText) -> str:
        workspace = obj.workspace
        code = SAMPLE_DIGITS[: workspace.otp_code_length]
        return sms_text.render(
            obj.text,
            code=code,
            validity_seconds=workspace.otp_validity_seconds,
            amount=SAMPLE_AMOUNT,
            payee=SAMPLE_PAYEE,
        )

    def _segments(self, obj: WorkspaceText) -> tuple[str, int]:
        info = sms_text.count_segments(self._sample(obj))
        return info.encoding, info.segments
