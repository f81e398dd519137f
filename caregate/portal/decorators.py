"""The gate in front of every portal page: signed in, and the current terms accepted."""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from caregate.accounts.terms import needs_terms

View = Callable[..., HttpResponse]


def portal_page(view: View) -> View:
    """Require sign-in, then send anyone who has not accepted the current terms to them."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if needs_terms(request.user) is not None:
            return redirect("portal:terms")
        return view(request, *args, **kwargs)

    return login_required(wrapper)
