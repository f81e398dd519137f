"""Form fields drawn in Python: the same HTML as Django's widget templates and the
project's field block, without a chain of template includes per field.

A text box drawn through Django's templates is three includes (``text.html`` ->
``input.html`` -> ``attrs.html``), each a loader lookup, a context push and a node walk:
0.3-0.5 ms a field, most of the sign-in pages' render time. The HTML here is the
templates' HTML, attribute for attribute (tests/test_rendering.py holds them side by side).
"""

from __future__ import annotations

from typing import Any

from django.forms import BoundField
from django.forms.renderers import DjangoTemplates
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

_WIDGETS = "django/forms/widgets/"
# Django's widget templates that are exactly ``input.html`` (an include of it, nothing else).
INPUT_TEMPLATES = frozenset(
    _WIDGETS + name
    for name in (
        "input.html",
        "text.html",
        "email.html",
        "password.html",
        "hidden.html",
        "number.html",
        "url.html",
        "tel.html",
        "search.html",
        "date.html",
        "datetime.html",
        "time.html",
        "color.html",
        "checkbox.html",
    )
)
TEXTAREA_TEMPLATE = _WIDGETS + "textarea.html"


def render_attrs(attrs: dict[str, Any]) -> SafeString:
    """``attrs.html``: `` name="value"`` each; True is a bare name, False is left out."""
    return format_html_join(
        "",
        " {}{}",
        (
            (name, "" if value is True else format_html('="{}"', value))
            for name, value in attrs.items()
            if value is not False
        ),
    )


def render_input(widget: dict[str, Any]) -> SafeString:
    """``input.html``."""
    value = widget["value"]
    shown = "" if value is None else format_html(' value="{}"', value)
    return format_html(
        '<input type="{}" name="{}"{}{}>',
        widget["type"],
        widget["name"],
        shown,
        render_attrs(widget["attrs"]),
    )


def render_textarea(widget: dict[str, Any]) -> SafeString:
    """``textarea.html`` (its newline after the opening tag included: browsers drop it)."""
    return format_html(
        '<textarea name="{}"{}>\n{}</textarea>',
        widget["name"],
        render_attrs(widget["attrs"]),
        widget["value"] or "",
    )


class FormRenderer(DjangoTemplates):
    """Django's template renderer, with the plain inputs and the textarea drawn in Python.

    Any other widget (a select, a radio list, a widget with its own template) still goes
    through its template, so nothing looks different if a form grows one."""

    def render(self, template_name: str, context: dict[str, Any], request: Any = None) -> str:
        if template_name in INPUT_TEMPLATES:
            return render_input(context["widget"])
        if template_name == TEXTAREA_TEMPLATE:
            return render_textarea(context["widget"])
        return super().render(template_name, context, request)


def render_field(field: BoundField) -> SafeString:
    """The field block of the flow pages (was ``field.html``): label, error message, widget."""
    label_for = field.id_for_label
    errors = field.errors
    if errors:
        message = format_html(
            '\n  <p class="error-message" id="{}-error" role="alert">{}</p>',
            label_for,
            format_html_join("", "{} ", ((error,) for error in errors)),
        )
    else:
        message = ""
    return format_html(
        '<div class="field{}">\n  <label for="{}">{}</label>{}\n  {}\n</div>',
        " field-error" if errors else "",
        label_for,
        field.label,
        message,
        field,
    )


def render_form_errors(errors: list[str]) -> SafeString:
    """The summary of a form's non-field errors (``form_errors.html``)."""
    if not errors:
        return SafeString()
    return format_html(
        '<div class="error-summary" role="alert">\n    {}\n  </div>',
        format_html_join("", "<p>{}</p>", ((error,) for error in errors)),
    )
