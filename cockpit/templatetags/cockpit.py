"""Formatting for the dashboard: shares as percentages, ranges with their hidden digits shown as x."""

from django import template
from django.conf import settings

from cockpit.selectors import country_label as _country_label

register = template.Library()


@register.filter
def percent(share: float | None) -> str:
    """0.4236 -> "42.4 %"; no denominator -> an en dash."""
    return "–" if share is None else f"{share * 100:.1f} %"


@register.filter
def masked_range(first_digits: str) -> str:
    """A range's first digits with its hidden ones as x: +233202007 -> +233202007xxx."""
    return first_digits + "x" * settings.COCKPIT_RANGE_HIDDEN_DIGITS


@register.filter
def country_label(code: str) -> str:
    return _country_label(code)
