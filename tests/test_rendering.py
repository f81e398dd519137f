"""The fields drawn in Python (caregate.portal.rendering) against the templates they
replace: Django's widget templates and the flow pages' former ``field.html`` and
``form_errors.html``."""

from __future__ import annotations

import re

import pytest
from django import forms
from django.forms.renderers import DjangoTemplates
from django.template import Context, Template
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy

from caregate.flows.forms import CodeForm, EmailForm, EmailSignInForm, UsernameSignInForm
from caregate.portal.rendering import FormRenderer, render_field, render_form_errors

# The templates the tags replaced, verbatim.
FIELD_HTML = """<div class="field{% if field.errors %} field-error{% endif %}">
  <label for="{{ field.id_for_label }}">{{ field.label }}</label>
  {% if field.errors %}
    <p class="error-message" id="{{ field.auto_id }}_error" role="alert">"""
FIELD_HTML += """{% for error in field.errors %}{{ error }} {% endfor %}</p>
  {% endif %}
  {{ field }}
</div>
"""
FORM_ERRORS_HTML = """{% if form.non_field_errors %}
  <div class="error-summary" role="alert">
    {% for error in form.non_field_errors %}<p>{{ error }}</p>{% endfor %}
  </div>
{% endif %}
"""


def squeeze(html: str) -> str:
    """Whitespace-normalized HTML (what a browser's parser makes of it is the same)."""
    return re.sub(r"\s+", " ", re.sub(r">\s+<", "><", html)).strip()


class EveryWidget(forms.Form):
    text = forms.CharField(
        label='Name <b>& "quotes"</b>',
        max_length=20,
        widget=forms.TextInput(
            attrs={"autofocus": True, "hidden-off": False, "data-x": 'a"<b>&', "data-n": 0}
        ),
    )
    email = forms.EmailField(widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    password = forms.CharField(widget=forms.PasswordInput(render_value=True))
    secret = forms.CharField(widget=forms.PasswordInput())
    hidden = forms.CharField(widget=forms.HiddenInput(), required=False)
    number = forms.IntegerField(min_value=1, max_value=9)
    url = forms.URLField(required=False, assume_scheme="https")
    agree = forms.BooleanField(required=False)
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    tel = forms.CharField(widget=forms.TextInput(attrs={"type": "tel"}), disabled=True)
    choice = forms.ChoiceField(choices=[("a", "A"), ("b", "B <i>")])
    lazy = forms.CharField(
        label=gettext_lazy("Lazy & <label>"),
        required=False,
        widget=forms.TextInput(attrs={"placeholder": gettext_lazy('Type "here" <now>')}),
    )


BOUND_DATA = [
    {},
    {
        "text": 'x" onmouseover="alert(1)',
        "email": "not-an-email",
        "password": "p<w>&",
        "secret": "s",
        "hidden": "h&",
        "number": "12",
        "url": "javascript:x",
        "agree": "on",
        "notes": "line 1\n<script>",
        "tel": "1",
        "choice": "b",
    },
    {"text": "", "email": "a@example.com", "number": "3", "notes": "", "choice": "z"},
]


@pytest.mark.parametrize("data", [None, *BOUND_DATA])
def test_every_widget_is_drawn_exactly_as_djangos_templates_draw_it(data: dict | None) -> None:
    fast = EveryWidget(data, renderer=FormRenderer())
    slow = EveryWidget(data, renderer=DjangoTemplates())
    if data is not None:  # bound forms draw their errors: aria-invalid, aria-describedby
        fast.is_valid()
        slow.is_valid()
    for name in fast.fields:
        assert str(fast[name]) == str(slow[name]), name
        old = Template(FIELD_HTML).render(Context({"field": slow[name]}))
        assert squeeze(render_field(fast[name])) == squeeze(old), name


def test_a_safe_value_is_not_escaped_twice() -> None:
    form = EveryWidget(initial={"text": mark_safe("&amp;")}, renderer=FormRenderer())
    assert 'value="&amp;"' in str(form["text"])
    assert str(form["text"]) == str(
        EveryWidget(initial={"text": mark_safe("&amp;")}, renderer=DjangoTemplates())["text"]
    )


SIGN_IN_FORMS = [
    (EmailSignInForm, {"email": "", "password": ""}),
    (EmailSignInForm, {"email": "pat@example.com", "password": "x" * 300}),
    (UsernameSignInForm, {"username": "", "password": "pw"}),
    (CodeForm, {"code": "12a"}),
    (CodeForm, {"code": "123456"}),
    (EmailForm, {"email": "bad"}),
]


@pytest.mark.parametrize(("form_class", "data"), SIGN_IN_FORMS)
@pytest.mark.parametrize("bound", [False, True])
def test_field_row_draws_what_field_html_drew(
    form_class: type[forms.Form], data: dict, bound: bool
) -> None:
    form = form_class(data if bound else None)
    if bound:
        form.is_valid()
    old = Template(FIELD_HTML)
    for field in form:
        assert squeeze(render_field(field)) == squeeze(old.render(Context({"field": field})))


def test_field_row_shows_every_error_and_escapes_them() -> None:
    form = EveryWidget({"number": "12"})
    form.add_error("number", "Second <problem>")
    html = render_field(form["number"])
    assert 'class="field field-error"' in html
    assert "Second &lt;problem&gt; </p>" in html
    assert 'id="id_number_error"' in html
    # The widget's aria-describedby names the message's id (Django 5.2 sets it).
    described = re.search(r'aria-describedby="([^"]+)"', html)
    assert described and f'id="{described.group(1)}"' in html
    assert squeeze(html) == squeeze(
        Template(FIELD_HTML).render(Context({"field": form["number"]}))
    )


@pytest.mark.parametrize("errors", [[], ["One <b>", "Two"]])
def test_form_errors_draws_what_form_errors_html_drew(errors: list[str]) -> None:
    form = EveryWidget({})
    form.is_valid()
    for error in errors:
        form.add_error(None, error)
    old = Template(FORM_ERRORS_HTML).render(Context({"form": form}))
    assert squeeze(render_form_errors(form.non_field_errors())) == squeeze(old)


def test_the_tags_draw_through_the_template_engine() -> None:
    form = CodeForm({"code": ""})
    form.is_valid()
    html = Template(
        "{% load form_fields %}{% form_errors form %}{% field_row form.code %}"
    ).render(Context({"form": form}))
    assert squeeze(html) == squeeze(render_field(form["code"]))
    assert 'aria-invalid="true"' in html and 'role="alert"' in html
