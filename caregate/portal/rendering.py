"""Form fields drawn in Python: the same HTML as Django's widget templates and the
project's field block, without a chain of template includes per field.

A text box drawn through Django's templates is three includes (``text.html`` ->
``input.html`` -> ``attrs.html``), each a loader lookup, a context push and a node walk:
0.3-0.5 ms a field, most of the sign-in pages' render time. The HTML here is the
templates' HTML, attribute for attribute (tests/test_rendering.py holds them side by side).
"""

from __future__ import annotations

import html
from typing import Any

from django.forms import BoundField
from django.forms.renderers import DjangoTemplates
from django.utils.functional import Promise
from django.utils.safestring import SafeString, mark_safe

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


def esc(value: object) -> str:
    """What ``{{ value }}`` prints: conditional_escape() without its lazy-text wrappers
    (format_html() per attribute made a text box ~60 us; this ~7 us)."""
    if isinstance(value, Promise):
        value = str(value)
    as_html = getattr(value, "__html__", None)
    return as_html() if as_html is not None else html.escape(str(value))


def safe(text: str) -> SafeString:
    # Only for text put together from esc()'d values and literal markup.
    return mark_safe(text)  # noqa: S308


def render_attrs(attrs: dict[str, Any]) -> str:
    """``attrs.html``: `` name="value"`` each; True is a bare name, False is left out."""
    return "".join(
        f" {esc(name)}" if value is True else f' {esc(name)}="{esc(value)}"'
        for name, value in attrs.items()
        if value is not False
    )


def render_input(widget: dict[str, Any]) -> SafeString:
    """``input.html``."""
    value = widget["value"]
    shown = "" if value is None else f' value="{esc(value)}"'
    attrs = render_attrs(widget["attrs"])
    return safe(f'<input type="{esc(widget["type"])}" name="{esc(widget["name"])}"{shown}{attrs}>')


def render_textarea(widget: dict[str, Any]) -> SafeString:
    """``textarea.html`` (its newline after the opening tag included: browsers drop it)."""
    value = widget["value"]
    attrs = render_attrs(widget["attrs"])
    return safe(
        f'<textarea name="{esc(widget["name"])}"{attrs}>\n{esc(value) if value else ""}</textarea>'
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
    label_for = esc(field.id_for_label)
    errors = field.errors
    message = ""
    if errors:
        text = "".join(f"{esc(error)} " for error in errors)
        # Django (5.2) points the widget's aria-describedby at "<auto_id>_error": the
        # message carries that id, so screen readers read it with the field.
        error_id = esc(f"{field.auto_id}_error")
        message = f'\n  <p class="error-message" id="{error_id}" role="alert">{text}</p>'
    return safe(
        f'<div class="field{" field-error" if errors else ""}">\n'
        f'  <label for="{label_for}">{esc(field.label)}</label>{message}\n'
        f"  {esc(field)}\n"
        "</div>"
    )


def render_form_errors(errors: list[str]) -> SafeString:
    """The summary of a form's non-field errors (``form_errors.html``)."""
    if not errors:
        return SafeString()
    text = "".join(f"<p>{esc(error)}</p>" for error in errors)
    return safe(f'<div class="error-summary" role="alert">\n    {text}\n  </div>')
