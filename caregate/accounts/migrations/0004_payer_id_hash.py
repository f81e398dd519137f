"""Keep only a keyed hash of each organization's payer ID, never the ID in clear.

For a provider without an NPI the payer ID is also the registration code. The hash is the
HMAC-SHA256 (Django's salted_hmac, keyed by the secret key) of the upper-cased, stripped ID,
as ``caregate.accounts.models.payer_id_hash`` computes it at this migration. Two existing
IDs that differ only in letter case would now collide: the migration then stops on the
unique constraint, and the operator decides which organization keeps the ID.
"""

from django.db import migrations, models
from django.db.migrations.exceptions import IrreversibleError
from django.utils.crypto import salted_hmac

SALT = "caregate.accounts.payer_id"


def hash_payer_ids(apps, schema_editor):
    Organization = apps.get_model("accounts", "Organization")
    for organization in Organization.objects.exclude(payer_id=None).exclude(payer_id=""):
        value = organization.payer_id.strip().upper()
        organization.payer_id_hash = salted_hmac(SALT, value, algorithm="sha256").hexdigest()
        organization.save(update_fields=["payer_id_hash"])


def refuse_to_unhash(apps, schema_editor):
    Organization = apps.get_model("accounts", "Organization")
    if Organization.objects.exclude(payer_id_hash=None).exists():
        raise IrreversibleError("payer IDs are kept only as hashes; they cannot be restored")


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_username_unique_ci")]

    operations = [
        migrations.RemoveConstraint(
            model_name="organization",
            name="organization_has_npi_or_payer_id",
        ),
        migrations.AddField(
            model_name="organization",
            name="payer_id_hash",
            field=models.CharField(blank=True, max_length=64, null=True, unique=True),
        ),
        migrations.RunPython(hash_payer_ids, refuse_to_unhash),
        migrations.RemoveField(
            model_name="organization",
            name="payer_id",
        ),
        migrations.AddConstraint(
            model_name="organization",
            constraint=models.CheckConstraint(
                condition=models.Q(npi__isnull=False) | models.Q(payer_id_hash__isnull=False),
                name="organization_has_npi_or_payer_id",
            ),
        ),
    ]
