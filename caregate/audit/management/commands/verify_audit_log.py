"""manage.py verify_audit_log: check the audit chain and name the first break.

``--checkpoint`` also prints a signed checkpoint of the head (keep it off this server);
``--against TOKEN`` checks that the log still holds that checkpoint's event, unchanged.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from caregate.audit.log import (
    ChainBreak,
    InvalidCheckpoint,
    make_checkpoint,
    read_checkpoint,
    verify_against,
    verify_chain,
)


def _failure(checked: int, broken: ChainBreak) -> CommandError:
    where = f"at event #{broken.event_id}" if broken.event_id is not None else "at its head"
    return CommandError(
        f"Audit log chain broken {where}: {broken.reason} ({checked} events before it are intact)."
    )


class Command(BaseCommand):
    help = (
        "Verify the hash chain of the audit log; exit 1 naming the first break. "
        "--checkpoint prints a signed checkpoint to keep elsewhere; --against checks one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        group = parser.add_mutually_exclusive_group()
        group.add_argument(
            "--checkpoint",
            action="store_true",
            help="after verifying, print a signed checkpoint of the head on stdout",
        )
        group.add_argument(
            "--against",
            metavar="TOKEN",
            help="also check that the log still holds this checkpoint's event unchanged",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["checkpoint"]:
            self._checkpoint()
        elif options["against"]:
            self._against(options["against"])
        else:
            checked, broken = verify_chain()
            if broken is not None:
                raise _failure(checked, broken)
            self.stdout.write(self.style.SUCCESS(f"Audit log intact: {checked} events verified."))

    def _checkpoint(self) -> None:
        try:
            token, checkpoint = make_checkpoint()
        except ValueError as exc:
            raise CommandError(f"Audit log chain broken ({exc}): no checkpoint made.") from exc
        # The token alone on stdout, so `verify_audit_log --checkpoint > file` keeps it.
        self.stderr.write(
            f"Audit log intact: checkpoint of event #{checkpoint.last_id} "
            f"({checkpoint.count} events, {checkpoint.created_at:%Y-%m-%d %H:%M:%S %Z}, "
            f"hash {checkpoint.last_hash}). Keep this token away from this server:"
        )
        self.stdout.write(token)

    def _against(self, token: str) -> None:
        try:
            checkpoint = read_checkpoint(token)
        except InvalidCheckpoint as exc:
            raise CommandError(f"Checkpoint refused: {exc}.") from exc
        checked, broken = verify_against(checkpoint)
        if broken is not None:
            raise _failure(checked, broken)
        self.stdout.write(
            self.style.SUCCESS(
                f"Audit log intact: {checked} events verified; it still holds checkpoint "
                f"event #{checkpoint.last_id} of {checkpoint.created_at:%Y-%m-%d %H:%M:%S %Z}."
            )
        )
