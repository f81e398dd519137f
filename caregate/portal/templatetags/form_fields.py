"""``{% field_row form.email %}`` and ``{% form_errors form %}``: the flow pages' field
block and error summary, drawn in Python (caregate.portal.rendering) rather than by an
``{% include %}`` per field."""

from __future__ import annotations

from django import template
from django.forms import BaseForm, BoundField
from django.utils.safestring import SafeString

from caregate.portal.rendering import render_field, render_form_errors

register = template.Library()


@register.simple_tag
def field_row(field: BoundField) -> SafeString:
    return render_field(field)


@register.simple_tag
def form_errors(form: BaseForm) -> SafeString:
    return render_form_errors(form.non_field_errors())
