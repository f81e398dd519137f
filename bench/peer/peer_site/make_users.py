"""Create N users, each with a confirmed email device named "default" (one shared hash).

Run: DJANGO_SETTINGS_MODULE=peer_site.settings .venv/bin/python -m peer_site.make_users N PW
"""

import sys


def make_users(count: int, password: str) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django_otp.plugins.otp_email.models import EmailDevice

    user_model = get_user_model()
    hashed = make_password(password)
    users = user_model.objects.bulk_create(
        user_model(username=f"peer{i}", email=f"peer{i}@example.com", password=hashed)
        for i in range(count)
    )
    EmailDevice.objects.bulk_create(
        EmailDevice(user=user, name="default", confirmed=True) for user in users
    )


if __name__ == "__main__":
    import django

    django.setup()
    make_users(int(sys.argv[1]), sys.argv[2])
