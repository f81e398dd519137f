"""The support console's search across organizations (caregate/staff/support_console.py):
``lower(col) LIKE 'x%'`` on last name, first name, username and email, OR-ed, with no
organization to narrow it. Migration 0009's indexes lead with organization_id and cannot
serve it; these (lower(col) text_pattern_ops, one per column) can, combined by a
BitmapOr. PostgreSQL only and outside the model state, for the reasons 0009 gives.
"""

from django.db import migrations

SEARCH_COLUMNS = ["last_name", "first_name", "username", "email"]


def _name(column: str) -> str:
    return f"user_{column}_prefix"


def create_search_indexes(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in SEARCH_COLUMNS:
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "{_name(column)}" ON "accounts_user" '
            f'(lower("{column}") text_pattern_ops)'
        )


def drop_search_indexes(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in SEARCH_COLUMNS:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{_name(column)}"')


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0010_staff_sso_identity"),
    ]

    operations = [migrations.RunPython(create_search_indexes, drop_search_indexes)]
