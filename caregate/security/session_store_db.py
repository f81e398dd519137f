"""Session engine: sessions in the database only (no Redis), through the lean store of
caregate.security.session_store (see there for what it leaves out)."""

from caregate.security.session_store import LeanDatabaseStore as SessionStore

__all__ = ["SessionStore"]
