"""Signals of account changes that other apps must follow."""

from django.dispatch import Signal

# Sent (with ``user``) inside the transaction of a Reset Registration (Manage Users and the
# support console): every app holding a second factor of that user removes it.
registration_reset = Signal()
