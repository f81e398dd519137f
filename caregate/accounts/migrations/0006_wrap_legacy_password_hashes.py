"""Wrap the pbkdf2_sha256 hashes of users imported before: Argon2id over the legacy hash.

Django's "Password upgrading without requiring a login": no password is needed, and the
first successful sign-in replaces the wrapped hash with plain Argon2id. Each user costs one
Argon2 hash here (about 30-40 ms). A malformed legacy hash is left as it is (it could not
sign in before either). Reversing leaves the wrapped hashes: they still verify.
"""

from django.db import migrations

from caregate.accounts.hashers import Argon2WrappedPBKDF2PasswordHasher


def wrap_legacy_hashes(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    hasher = Argon2WrappedPBKDF2PasswordHasher()
    prefix = f"{hasher.legacy_hasher.algorithm}$"
    legacy = User.objects.filter(password__startswith=prefix).only("pk", "password")
    for user in legacy.iterator(chunk_size=500):
        try:
            hasher.legacy().decode(user.password)
            wrapped = hasher.wrap(user.password)
        except (ValueError, TypeError, IndexError):
            continue
        User.objects.filter(pk=user.pk).update(password=wrapped)
    hasher.forget_presence()


class Migration(migrations.Migration):
    dependencies = [("accounts", "0005_password_length")]

    operations = [migrations.RunPython(wrap_legacy_hashes, migrations.RunPython.noop)]
