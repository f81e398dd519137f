"""Session keys, in one place."""

FLOWS = "caregate.flows"  # {flow name: flow state (JSON)}
AUTH_TIME = "caregate.auth_time"  # epoch seconds of the sign-in
LAST_SEEN = "caregate.last_seen"  # epoch seconds of the last request (idle timeout)
SIGNIN_METHOD = "caregate.signin_method"  # email | phone | remembered
