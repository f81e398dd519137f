"""`make idp`: the test identity provider with demo staff accounts, for `make run`.

A development stand-in for the operator's identity provider (Entra ID in the guides'
world), so that the staff LOGIN and the support console can be tried by hand:

    make idp                 # terminal 1: prints the settings for terminal 2
    <those settings> make run

Demo staff (any password at the provider's form): sam (support), stella (staff only),
nora (no Caregate role: refused), pat (no MFA at the provider: refused).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading

from tests.oidc.idp import TestIdentityProvider

CLIENT_ID = "caregate-dev"
SECRET = "caregate-dev-client-secret-not-for-production"
ROLE_MAP = "caregate-support=support,caregate-staff=staff"
DOMAIN = "staff.caregate.invalid"


def account(sub: str, first: str, last: str, groups: list[str], amr: list[str]) -> dict:
    return {
        "sub": sub,
        "email": f"{first.lower()}.{last.lower()}@{DOMAIN}",
        "email_verified": True,
        "given_name": first,
        "family_name": last,
        "groups": groups,
        "amr": amr,
    }


ACCOUNTS = {
    "sam": account("demo-sam", "Sam", "Support", ["caregate-support"], ["pwd", "mfa"]),
    "stella": account("demo-stella", "Stella", "Staff", ["caregate-staff"], ["pwd", "mfa"]),
    "nora": account("demo-nora", "Nora", "Norole", ["cafeteria"], ["pwd", "mfa"]),
    "pat": account("demo-pat", "Pat", "Password", ["caregate-support"], ["pwd"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--app-port", type=int, default=8000)
    args = parser.parse_args()
    app = f"http://127.0.0.1:{args.app_port}"
    client = {
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "redirect_uris": [f"{app}/staff-login/identity-provider/"],
        "post_logout_redirect_uris": [f"{app}/"],
    }
    with TestIdentityProvider.running([client], ACCOUNTS, port=args.port) as idp:
        print(f"Test identity provider at {idp.issuer} (demo staff: {', '.join(ACCOUNTS)})")
        print("Run Caregate with:")
        print(
            f"  CAREGATE_OIDC_ISSUER={idp.issuer} CAREGATE_OIDC_CLIENT_ID={CLIENT_ID} "
            f"CAREGATE_OIDC_CLIENT_SECRET={SECRET} CAREGATE_OIDC_ROLE_MAP={ROLE_MAP} "
            f"CAREGATE_INTERNAL_EMAIL_DOMAIN={DOMAIN} PORT={args.app_port} make run",
            flush=True,
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


if __name__ == "__main__":
    main()
