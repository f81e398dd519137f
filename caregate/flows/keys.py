"""Session keys, in one place."""

FLOWS = "caregate.flows"  # {flow name: flow state (JSON)}
AUTH_TIME = "caregate.auth_time"  # epoch seconds of the sign-in
LAST_SEEN = "caregate.last_seen"  # epoch seconds of the last request (idle timeout)
SIGNIN_METHOD = "caregate.signin_method"  # email | phone | remembered
# Remember Me (Section 5), SHA-256 of the token, never the token itself:
REMEMBERED_BY = "caregate.remembered_by"  # the token this session was created from
REMEMBER_UNTIL = "caregate.remember_until"  # epoch seconds: that token's expiry ends the session
REMEMBER_SET = "caregate.remember_set"  # the token set by this session's full sign-in
# Staff LOGIN (OIDC): the ID token, kept only as the id_token_hint of the provider's logout.
STAFF_ID_TOKEN = "caregate.staff_id_token"  # noqa: S105 (a session key name)
# Set by Sign out of a staff session: the next staff LOGIN in this browser sends prompt=login.
STAFF_REAUTHENTICATE = "caregate.staff_reauthenticate"
