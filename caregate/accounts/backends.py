"""Authenticate by email (the guides' "Sign in with your email address") or username."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from caregate.accounts.models import CaregateUserManager, User


class EmailOrUsernameBackend(ModelBackend):
    """Django's ModelBackend, looking the user up by email or by username.

    Timing: for an unknown account ModelBackend's pattern is kept (hash the password
    anyway), so an unknown email costs the same Argon2 work as a wrong password.
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        email: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        if password is None or (username is None and email is None):
            return None
        try:
            if email is not None:
                user = User.objects.get(email=CaregateUserManager.normalize_email(email))
            else:
                user = User.objects.get(username=username)
        except User.DoesNotExist:
            User().set_password(password)
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None
