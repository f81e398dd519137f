"""Sign the audit head: an HMAC over (last id, last hash, count), keyed by the secret key.

Without it, someone with database access could delete the newest events and point the head
at the event left last, and the verifier would find nothing wrong. The existing head (if
any) is signed here with the formula of ``caregate.audit.log.head_mac`` at this migration.
"""

from django.db import migrations, models
from django.utils.crypto import salted_hmac

HEAD_SALT = "caregate.audit.head"


def sign_head(apps, schema_editor):
    AuditHead = apps.get_model("audit", "AuditHead")
    for head in AuditHead.objects.all():
        message = f"{head.last_id}:{head.last_hash}:{head.count}"
        head.mac = salted_hmac(HEAD_SALT, message, algorithm="sha256").hexdigest()
        head.save(update_fields=["mac"])


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_trigger")]

    operations = [
        migrations.AddField(
            model_name="audithead",
            name="mac",
            field=models.CharField(default="", max_length=64),
        ),
        migrations.RunPython(sign_head, migrations.RunPython.noop),
    ]
