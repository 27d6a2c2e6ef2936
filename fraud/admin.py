"""The fraud guard in the admin (API.md section 13): every block and shadow decision with the evidence that
tripped it, lifted by an audited action; and each workspace's safe list, on the workspace's page.

Both write through the services (`fraud.services`), never through a form's save: a lift forgets the block in
Redis once committed, and a safe-list change reaches every process's cache.
"""

from datetime import datetime, timedelta

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from fraud.models import RANGE_DIGITS_DROPPED, FraudBlock, SafeListEntry
from fraud.selectors import FRAUD_BLOCKS_LISTED_DAYS
from fraud.services import fraud_block_lift, safe_list_add, safe_list_remove
from workspaces.admin import WorkspaceAdmin
from workspaces.models import Workspace

# Lifting is the one change staff make to a block: it needs the model's change permission, seeing it the view one.
LIFT_PERMISSION = "fraud.change_fraudblock"


def _short(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%m-%d %H:%M")


def block_state(block: FraudBlock, now: datetime) -> str:
    if block.lifted_at is not None:
        return "lifted"
    return "active" if block.ends_at > now else "ended"


class BlockStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("active", "Active"), ("ended", "Ended"), ("lifted", "Lifted")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[FraudBlock]) -> QuerySet[FraudBlock]:
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(lifted_at__isnull=True, ends_at__gt=now)
        if self.value() == "ended":
            return queryset.filter(lifted_at__isnull=True, ends_at__lte=now)
        if self.value() == "lifted":
            return queryset.filter(lifted_at__isnull=False)
        return queryset


@admin.register(FraudBlock)
class FraudBlockAdmin(admin.ModelAdmin):
    """Read-only rows: the guard writes them, staff only lift them (the action), each lift audited."""

    # Narrow columns: the list sits beside the admin's navigation; times, lifts and the id are on each block's page.
    list_display = ["target", "rule", "mode", "workspace_slug", "state", "sessions", "converted", "numbers"]
    list_display_links = ["target"]
    list_filter = ["mode", "rule", "scope", BlockStateFilter, "workspace"]
    list_select_related = ["workspace"]
    search_fields = ["value", "workspace__slug", "workspace__name"]
    fields = (
        "public_id",
        "workspace",
        "scope",
        "value",
        "rule",
        "mode",
        "state",
        "evidence_summary",
        "created_at",
        "ends_at",
        "lifted_at",
        "lifted_by",
    )
    readonly_fields = fields
    actions = ["lift_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the guard decides blocks; staff keep a safe list instead

    def has_change_permission(self, request: HttpRequest, obj: FraudBlock | None = None) -> bool:
        return False  # nothing of a block is edited: it is lifted, by the action

    def has_delete_permission(self, request: HttpRequest, obj: FraudBlock | None = None) -> bool:
        return False  # lifted, never deleted: the row is the evidence of what the guard did

    def has_lift_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(LIFT_PERMISSION)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        block = self.get_object(request, object_id)
        can_lift = (
            block is not None and self.has_lift_permission(request) and block_state(block, timezone.now()) == "active"
        )
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "can_lift": can_lift})

    @admin.display(description="range or country", ordering="value")
    def target(self, obj: FraudBlock) -> str:
        """A range as the numbers it holds (+233204123xxx), a country by its code."""
        return f"{obj.value}{'x' * RANGE_DIGITS_DROPPED}" if obj.scope == FraudBlock.Scope.RANGE else obj.value

    @admin.display(description="state", ordering="ends_at")
    def state(self, obj: FraudBlock) -> str:
        """Whether it is in force, and until when, or since when it is not."""
        state = block_state(obj, timezone.now())
        if state == "lifted":
            assert obj.lifted_at is not None
            return f"lifted {_short(obj.lifted_at)}"
        return f"until {_short(obj.ends_at)}" if state == "active" else f"ended {_short(obj.ends_at)}"

    @admin.display(description="workspace", ordering="workspace__slug")
    def workspace_slug(self, obj: FraudBlock) -> str:
        return obj.workspace.slug

    # The evidence, one number a column (what tripped the rule, counted when it tripped).
    @admin.display(description="sessions")
    def sessions(self, obj: FraudBlock) -> int:
        return obj.evidence.get("sessions", 0)

    @admin.display(description="converted")
    def converted(self, obj: FraudBlock) -> int:
        return obj.evidence.get("converted", 0)

    @admin.display(description="numbers")
    def numbers(self, obj: FraudBlock) -> int:
        return obj.evidence.get("numbers", 0)

    @admin.display(description="evidence")
    def evidence_summary(self, obj: FraudBlock) -> str:
        """What tripped the rule, counted when it tripped: sessions judged, those converted, distinct numbers."""
        sessions, converted = obj.evidence.get("sessions", 0), obj.evidence.get("converted", 0)
        share = f" ({converted / sessions:.0%})" if sessions else ""
        return f"{sessions} sessions, {converted} converted{share}, {obj.evidence.get('numbers', 0)} numbers"

    @admin.action(description="Lift selected blocks", permissions=["lift"])
    def lift_selected(self, request: HttpRequest, queryset: QuerySet[FraudBlock]) -> None:
        actor = request.user.get_username()
        now = timezone.now()
        lifted: list[str] = []
        unchanged: list[str] = []
        for block in queryset.select_related("workspace"):
            was_active = block_state(block, now) == "active"
            result = fraud_block_lift(workspace=block.workspace, block_id=block.public_id, actor=actor)
            done = was_active and result.lifted_by == actor and result.lifted_at is not None
            (lifted if done else unchanged).append(f"{block.value} ({block.workspace.slug})")
        if lifted:
            self.message_user(request, f"Lifted {len(lifted)} block(s): {', '.join(lifted)}.", messages.SUCCESS)
        if unchanged:
            message = f"Already lifted or ended, left as they are: {', '.join(unchanged)}."
            self.message_user(request, message, messages.WARNING)


class SafeListInlineForm(forms.ModelForm):
    class Meta:
        model = SafeListEntry
        fields = ["prefix", "note"]

    def clean_prefix(self) -> str:
        return self.cleaned_data["prefix"].strip()


class SafeListInline(admin.TabularInline):
    """Numbers and prefixes the guard never blocks, refuses or counts. Entries are added or removed, never
    edited: a changed prefix is another entry, and each addition and removal is audited."""

    model = SafeListEntry
    form = SafeListInlineForm
    fields = ("prefix", "note", "created_by", "created_at")
    readonly_fields = ("created_by", "created_at")
    extra = 0
    verbose_name = "safe-list entry"
    verbose_name_plural = "Fraud guard: safe list (numbers and prefixes never blocked, refused or counted)"

    def has_change_permission(self, request: HttpRequest, obj: Workspace | None = None) -> bool:
        return False


def _with_blocks(fieldsets: list) -> list:
    """WorkspaceAdmin's fieldsets, with the workspace's blocks under its guard's mode."""
    return [
        (name, {**options, "fields": [*options["fields"], "guard_blocks"]})
        if name == "Fraud guard"
        else (name, options)
        for name, options in fieldsets
    ]


class WorkspaceGuardAdmin(WorkspaceAdmin):
    """The workspace's page with its blocks and its safe list. The guard's fields are the workspace's own
    (WorkspaceAdmin); what the guard decided is this app's."""

    inlines = [*WorkspaceAdmin.inlines, SafeListInline]
    readonly_fields = [*WorkspaceAdmin.readonly_fields, "guard_blocks"]
    fieldsets = _with_blocks(WorkspaceAdmin.fieldsets)

    @admin.display(description="Blocks")
    def guard_blocks(self, obj: Workspace) -> str:
        if obj.pk is None:
            return "-"
        now = timezone.now()
        rows = FraudBlock.objects.filter(workspace=obj)
        in_force = rows.filter(lifted_at__isnull=True, ends_at__gt=now).count()
        recent = rows.filter(created_at__gte=now - timedelta(days=FRAUD_BLOCKS_LISTED_DAYS)).count()
        url = reverse("admin:fraud_fraudblock_changelist") + f"?workspace__id__exact={obj.pk}"
        return format_html(
            '<a href="{}">{} active now, {} in the last {} days</a>', url, in_force, recent, FRAUD_BLOCKS_LISTED_DAYS
        )

    def save_formset(self, request: HttpRequest, form: forms.ModelForm, formset, change: bool) -> None:
        if formset.model is not SafeListEntry:
            super().save_formset(request, form, formset, change)
            return
        actor = request.user.get_username()
        formset.save(commit=False)  # sorts the forms into new and deleted objects, writes nothing
        for entry in formset.deleted_objects:
            safe_list_remove(entry=entry, actor=actor)
        for entry in formset.new_objects:
            safe_list_add(workspace=form.instance, prefix=entry.prefix, note=entry.note, actor=actor)


admin.site.unregister(Workspace)
admin.site.register(Workspace, WorkspaceGuardAdmin)
