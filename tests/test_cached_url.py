"""The project's ``{% url %}`` (caregate.portal.templatetags.cached_url) answers what
Django's tag answers, in every form the tag takes, and never a stale address."""

from __future__ import annotations

import pytest
from django.template import Context, Engine, Template, engines
from django.template.defaulttags import URLNode
from django.urls import NoReverseMatch, set_script_prefix

from caregate.portal.templatetags.cached_url import CachedURLNode, _reverse

# Django's own engine, without the project's builtin: the reference answers.
DJANGO = Engine(libraries={}, builtins=[])
CASES = [
    "{% url 'portal:login' %}",
    "{% url 'flows:cancel' 'email-login' %}",
    "{% url 'flows:cancel' name %}",
    "{% url 'flows:stage' flow_name=name stage_key='credentials' %}",
    "{% url 'portal:manage-user' 42 %}",
    "{% url 'portal:manage-user' user_id=uid %}",
    "{% url view %}",
    "{% url 'portal:login' as there %}[{{ there }}]",
    "{% url 'no-such-view' as there %}[{{ there }}]",
    "{% autoescape off %}{% url 'flows:cancel' name %}{% endautoescape %}",
]
CONTEXT = {"name": "email-login", "uid": 7, "view": "trouble"}


def project(source: str) -> Template:
    return engines["django"].from_string(source)


@pytest.mark.parametrize("source", CASES)
def test_the_tag_draws_what_djangos_draws(source: str) -> None:
    expected = DJANGO.from_string(source).render(Context(CONTEXT))
    for _ in range(2):  # the second answer comes from the cache
        assert project(source).render(CONTEXT) == expected


def test_every_template_gets_the_cached_tag() -> None:
    node = project("{% url 'portal:login' %}").template.nodelist[0]
    assert isinstance(node, CachedURLNode)
    assert type(DJANGO.from_string("{% url 'portal:login' %}").nodelist[0]) is URLNode


def test_a_missing_view_still_fails_loudly() -> None:
    with pytest.raises(NoReverseMatch):
        project("{% url 'no-such-view' %}").render({})


def test_the_script_prefix_is_part_of_the_answer() -> None:
    template = project("{% url 'portal:login' %}")
    plain = template.render({})
    set_script_prefix("/portal-under/")
    try:
        assert template.render({}) == "/portal-under" + plain
    finally:
        set_script_prefix("/")
    assert template.render({}) == plain


def test_an_overridden_url_configuration_is_not_answered_from_the_cache(settings) -> None:
    template = project("{% url 'healthz' %}")
    assert template.render({}) == "/healthz"
    settings.ROOT_URLCONF = "tests.urls_elsewhere"
    with pytest.raises(NoReverseMatch):
        template.render({})


def test_objects_are_reversed_every_time_not_cached() -> None:
    class Slug:
        def __init__(self, text: str) -> None:
            self.text = text

        def __str__(self) -> str:
            return self.text

    template = project("{% url 'flows:cancel' slug %}")
    slug = Slug("first")
    assert template.render({"slug": slug}) == "/first/cancel/"
    before = _reverse.cache_info().currsize
    slug.text = "second"  # the same object, a different address
    assert template.render({"slug": slug}) == "/second/cancel/"
    assert _reverse.cache_info().currsize == before
