"""``{% url %}`` that remembers its answers: a template builtin (settings.TEMPLATES) that
takes the place of Django's tag in every template.

Django's tag calls reverse() on every render, ~25 us each; a sign-in draws about 18 of
them, the same few addresses again and again. This one parses and renders exactly like
Django's (it is Django's node, with reverse() looked up in a cache first) and keys each
answer on everything reverse() reads here: the view name, the arguments, the current
application, the URL configuration and the script prefix. Arguments that are not plain
strings or integers (a model instance, say, whose str() can change) are not cached.
The project uses no i18n_patterns, so the language is not part of the key.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.template import Context, Library, Node
from django.template.base import Parser, Token
from django.template.defaulttags import URLNode
from django.template.defaulttags import url as django_url
from django.urls import NoReverseMatch, get_script_prefix, get_urlconf, reverse
from django.utils.html import conditional_escape

register = Library()

_PLAIN = (str, int)


@lru_cache(maxsize=1024)
def _reverse(
    view_name: str,
    args: tuple[str | int, ...],
    kwargs: tuple[tuple[str, str | int], ...],
    current_app: str | None,
    root_urlconf: str,
    urlconf: str | None,
    script_prefix: str,
) -> str:
    # The last three are only the key: reverse() reads them itself.
    return reverse(view_name, args=args, kwargs=dict(kwargs), current_app=current_app)


@receiver(setting_changed)
def _forget(**_: Any) -> None:
    """A test that overrides a setting may change what reverse() answers."""
    _reverse.cache_clear()


def _current_app(context: Context) -> str | None:
    # As URLNode does: the request's current_app, else the namespace it was resolved in.
    request = getattr(context, "request", None)
    try:
        return request.current_app  # type: ignore[union-attr]
    except AttributeError:
        try:
            return request.resolver_match.namespace  # type: ignore[union-attr]
        except AttributeError:
            return None


class CachedURLNode(URLNode):
    def render(self, context: Context) -> str:
        args = tuple(arg.resolve(context) for arg in self.args)
        kwargs = tuple((k, v.resolve(context)) for k, v in self.kwargs.items())
        view_name = self.view_name.resolve(context)
        current_app = _current_app(context)
        plain = (
            isinstance(view_name, str)
            and (current_app is None or isinstance(current_app, str))
            and all(type(a) in _PLAIN for a in args)
            and all(type(v) in _PLAIN for _, v in kwargs)
        )
        if not plain:
            return super().render(context)
        url = ""
        try:
            url = _reverse(
                view_name,
                args,
                kwargs,
                current_app,
                settings.ROOT_URLCONF,
                get_urlconf(),
                get_script_prefix(),
            )
        except NoReverseMatch:
            if self.asvar is None:
                raise
        if self.asvar:
            context[self.asvar] = url
            return ""
        return conditional_escape(url) if context.autoescape else url


@register.tag
def url(parser: Parser, token: Token) -> Node:
    """Django's ``{% url %}``, parsed by Django, rendered through the cache."""
    node = django_url(parser, token)
    return CachedURLNode(node.view_name, node.args, node.kwargs, node.asvar)
