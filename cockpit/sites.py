"""The admin site: Zeckta's branding, the traffic dashboard on its index, and the operator guide."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path
from django.utils import timezone

from cockpit.selectors import WINDOW_LABELS, dashboard_get

DASHBOARD_PERMISSION = "cockpit.view_traffichour"  # business numbers of every workspace: not for all staff


class ZecktaAdminSite(admin.AdminSite):
    site_header = "Zeckta OTP"
    site_title = "Zeckta OTP"
    index_title = "Operations"
    index_template = "cockpit/index.html"
    site_url = None  # the service has no site of its own to view: "API docs" is in the user links instead

    def get_urls(self) -> list[URLPattern | URLResolver]:
        return [path("guide/", self.admin_view(self.guide), name="guide"), *super().get_urls()]

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        context = {**(extra_context or {}), "windows": WINDOW_LABELS}
        if request.user.has_perm(DASHBOARD_PERMISSION):
            context["dashboard"] = dashboard_get(now=timezone.now(), window=request.GET.get("window", ""))
        return super().index(request, context)

    def guide(self, request: HttpRequest) -> TemplateResponse:
        """How to do the daily tasks, for operators: a page of the admin, next to the pages it links to."""
        return TemplateResponse(
            request,
            "cockpit/guide.html",
            {
                **self.each_context(request),
                "title": "Operator guide",
            },
        )
