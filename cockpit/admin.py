"""The cockpit's additions to other apps' admin pages: each workspace's and each route's traffic, read from the
rollup (never from the sessions), and a route's latest delivery attempts. The pages stay the lower apps'; these
subclasses replace their registrations, since only this top app may read the OTP traffic.

The traffic is the dashboard's, cut to one workspace or route: it needs the dashboard's permission, as on the
index, and staff with only the rights of the page see the page without it. A route's latest attempts are SMS (a
number each, linking to the SMS's page): they need the permission to view SMS."""

from datetime import timedelta

from django.contrib import admin
from django.db.models import IntegerField, OuterRef, QuerySet, Subquery, Sum
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from cockpit.models import TrafficHour
from cockpit.selectors import WINDOW_LABELS, dashboard_get
from cockpit.services import hour_floor
from cockpit.sites import DASHBOARD_PERMISSION
from cockpit.templatetags.cockpit import percent
from fraud.admin import WorkspaceGuardAdmin
from otp.models import SmsAttempt
from senders.admin import RouteAdmin
from senders.models import Route
from workspaces.models import Workspace

RECENT_ATTEMPTS = 20  # on a route's page
DETAIL_WINDOW = "30d"  # the breakdowns on a workspace's or a route's page
SMS_VIEW_PERMISSION = "otp.view_smsmessage"  # a route's latest attempts: each one's number and SMS page
WORKSPACE_TRAFFIC_COLUMNS = ("sms_24h", "conversion_24h")
ROUTE_TRAFFIC_COLUMNS = ("sms_24h", "delivery_24h", "failed_24h")


def _sees_traffic(request: HttpRequest) -> bool:
    return request.user.has_perm(DASHBOARD_PERMISSION)


def _last_24h_sum(metric: str, **match: OuterRef) -> Subquery:
    """The sum of one rollup column over the last 24 hours for the row of the outer query (its rollup rows are
    found by the rollup's (workspace, hour) index, or by the hours for a route)."""
    since = hour_floor(timezone.now()) - timedelta(hours=23)
    rows = TrafficHour.objects.filter(hour__gte=since, **match).order_by().values(*match)
    return Subquery(rows.annotate(total=Sum(metric)).values("total"), output_field=IntegerField())


def _traffic(*, workspace: Workspace | None = None, route_name: str | None = None) -> str:
    """One workspace's or one route's part of the dashboard, as a table on its page."""
    dashboard = dashboard_get(now=timezone.now(), window=DETAIL_WINDOW, workspace=workspace, route_name=route_name)
    return render_to_string(
        "cockpit/traffic.html",
        {
            "dashboard": dashboard,
            "windows": WINDOW_LABELS,
            "show_workspaces": workspace is None,
            "show_routes": route_name is None,
            "show_suspects": workspace is not None,
        },
    )


def _conversion(approved: int | None, sms: int | None) -> str:
    return percent((approved or 0) / sms if sms else None)


admin.site.unregister(Workspace)


@admin.register(Workspace)
class WorkspaceTrafficAdmin(WorkspaceGuardAdmin):
    # The OTP policy stays on each workspace's page: the list says which are active, what they pay, what they send.
    list_display = [
        "name",
        "slug",
        "is_active",
        "is_prepaid",
        "balance_units",
        "daily_sms_cap",
        "fraud_guard_mode",
        *WORKSPACE_TRAFFIC_COLUMNS,
        "created_at",
    ]
    readonly_fields = [*WorkspaceGuardAdmin.readonly_fields, "traffic"]
    fieldsets = [
        WorkspaceGuardAdmin.fieldsets[0],
        ("Traffic", {"fields": ["traffic"]}),
        *WorkspaceGuardAdmin.fieldsets[1:],
    ]

    def get_list_display(self, request: HttpRequest) -> list:
        hidden = () if _sees_traffic(request) else WORKSPACE_TRAFFIC_COLUMNS
        return [name for name in super().get_list_display(request) if name not in hidden]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Workspace]:
        queryset = super().get_queryset(request)
        if not _sees_traffic(request):
            return queryset
        return queryset.annotate(
            sms_24h=_last_24h_sum("sms", workspace=OuterRef("pk")),
            approved_24h=_last_24h_sum("approved", workspace=OuterRef("pk")),
        )

    def get_fieldsets(self, request: HttpRequest, obj: Workspace | None = None) -> list:
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None and _sees_traffic(request):
            return fieldsets
        return [entry for entry in fieldsets if entry[0] != "Traffic"]

    @admin.display(description="SMS (24 h)", ordering="sms_24h")
    def sms_24h(self, obj: Workspace) -> int:
        return getattr(obj, "sms_24h", None) or 0

    @admin.display(description="conversion (24 h)")
    def conversion_24h(self, obj: Workspace) -> str:
        return _conversion(getattr(obj, "approved_24h", None), getattr(obj, "sms_24h", None))

    @admin.display(description="Traffic")
    def traffic(self, obj: Workspace) -> str:
        if obj.pk is None:
            return "-"
        return _traffic(workspace=obj)


admin.site.unregister(Route)


@admin.register(Route)
class RouteTrafficAdmin(RouteAdmin):
    # The receipt URL path stays on each route's page.
    list_display = [*(name for name in RouteAdmin.list_display if name != "receipt_path"), *ROUTE_TRAFFIC_COLUMNS]
    readonly_fields = [*RouteAdmin.readonly_fields, "traffic", "recent_attempts"]
    fields = [*RouteAdmin.fields, "traffic", "recent_attempts"]

    def get_list_display(self, request: HttpRequest) -> list:
        hidden = () if _sees_traffic(request) else ROUTE_TRAFFIC_COLUMNS
        return [name for name in super().get_list_display(request) if name not in hidden]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Route]:
        queryset = super().get_queryset(request)
        if not _sees_traffic(request):
            return queryset
        return queryset.annotate(
            sms_24h=_last_24h_sum("sms", route_name=OuterRef("name")),
            delivered_24h=_last_24h_sum("delivered", route_name=OuterRef("name")),
            failed_24h=_last_24h_sum("failed", route_name=OuterRef("name")),
        )

    def get_fields(self, request: HttpRequest, obj: Route | None = None) -> list:
        hidden = set()
        if obj is None or not _sees_traffic(request):
            hidden.add("traffic")
        if obj is None or not request.user.has_perm(SMS_VIEW_PERMISSION):
            hidden.add("recent_attempts")
        return [name for name in super().get_fields(request, obj) if name not in hidden]

    @admin.display(description="SMS (24 h)", ordering="sms_24h")
    def sms_24h(self, obj: Route) -> int:
        return getattr(obj, "sms_24h", None) or 0

    @admin.display(description="delivery rate (24 h)")
    def delivery_24h(self, obj: Route) -> str:
        return _conversion(getattr(obj, "delivered_24h", None), getattr(obj, "sms_24h", None))

    @admin.display(description="failed (24 h)", ordering="failed_24h")
    def failed_24h(self, obj: Route) -> int:
        return getattr(obj, "failed_24h", None) or 0

    @admin.display(description="Traffic")
    def traffic(self, obj: Route) -> str:
        return _traffic(route_name=obj.name) if obj.pk else "-"

    @admin.display(description="Latest attempts")
    def recent_attempts(self, obj: Route) -> str:
        """The last calls to this provider, newest first: what it answered, and its receipts."""
        if obj.pk is None:
            return "-"
        # Newest first by id (ids follow time): the primary key walked backwards, no sort of the route's rows.
        attempts = list(
            SmsAttempt.objects.filter(route=obj).select_related("message").order_by("-id")[:RECENT_ATTEMPTS]
        )
        if not attempts:
            return "None yet."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td><a href='{}'>{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    a.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                    reverse("admin:otp_smsmessage_change", args=[a.message_id]),
                    a.message.to,
                    a.status,
                    a.provider_message_id or "-",
                    a.provider_status or "-",
                    a.error_code or "-",
                    a.receipt_at.strftime("%H:%M:%S") if a.receipt_at else "-",
                )
                for a in attempts
            ),
        )
        return format_html(
            "<table><tr><th>started</th><th>SMS to</th><th>status</th><th>provider id</th><th>provider status</th>"
            "<th>error code</th><th>receipt</th></tr>{}</table>",
            rows,
        )
