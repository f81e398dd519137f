"""manage.py verify_audit_log: check the audit chain and name the first break."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from caregate.audit.log import verify_chain


class Command(BaseCommand):
    help = "Verify the hash chain of the audit log; exit 1 naming the first break."

    def handle(self, *args: Any, **options: Any) -> None:
        checked, broken = verify_chain()
        if broken is not None:
            raise CommandError(
                f"Audit log chain broken at event #{broken.event_id}: {broken.reason} "
                f"({checked} events before it are intact)."
            )
        self.stdout.write(self.style.SUCCESS(f"Audit log intact: {checked} events verified."))
