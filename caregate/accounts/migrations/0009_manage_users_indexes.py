"""Manage Users: the organization's users in name order, and prefix search.

The search is ``lower(col) LIKE 'x%'`` within one organization. PostgreSQL uses a btree for
LIKE only under the C collation or with a pattern opclass; databases here are C.UTF-8, for
which it does not, so the search indexes are (organization_id, lower(col)
text_pattern_ops), created on PostgreSQL only. They are kept out of the model state on
purpose: an opclass index is not portable (SQLite cannot create one), and nothing but this
migration needs to know of them.
"""

from django.db import migrations, models

SEARCH_COLUMNS = ["last_name", "first_name", "username", "email"]


def _name(column: str) -> str:
    return f"user_org_{column}_prefix"


def create_search_indexes(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in SEARCH_COLUMNS:
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "{_name(column)}" ON "accounts_user" '
            f'("organization_id", lower("{column}") text_pattern_ops)'
        )


def drop_search_indexes(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in SEARCH_COLUMNS:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{_name(column)}"')


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0008_signed_in_session"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="user",
            index=models.Index(
                fields=["organization", "last_name", "first_name", "id"], name="user_org_name"
            ),
        ),
        migrations.RunPython(create_search_indexes, drop_search_indexes),
    ]
