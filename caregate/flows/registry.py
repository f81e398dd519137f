"""Every flow, by name: the one list the URLconf resolves against."""

from __future__ import annotations

from caregate.factors.flows import FACTOR_FLOWS
from caregate.flows.change_email import CHANGE_EMAIL
from caregate.flows.change_phone import CHANGE_PHONE
from caregate.flows.email_login import EMAIL_LOGIN
from caregate.flows.engine import Flow
from caregate.flows.forgot_password import FORGOT_PASSWORD
from caregate.flows.mfa_registration import COMPLETE_REGISTRATION, MFA_REGISTRATION
from caregate.flows.new_provider_registration import REGISTER
from caregate.flows.passkey_login import PASSKEY_LOGIN
from caregate.flows.phone_login import PHONE_LOGIN
from caregate.passkeys.flows import ADD_PASSKEY
from caregate.staff.staff_login import STAFF_LOGIN

FLOWS: dict[str, Flow] = {
    flow.name: flow
    for flow in [
        EMAIL_LOGIN,
        PHONE_LOGIN,
        REGISTER,
        MFA_REGISTRATION,
        COMPLETE_REGISTRATION,
        FORGOT_PASSWORD,
        PASSKEY_LOGIN,
    ]
}
# The login page's staff LOGIN (OpenID Connect; caregate/staff/staff_login.py).
FLOWS[STAFF_LOGIN.name] = STAFF_LOGIN
# Setup → My Account (started only by a signed-in user: caregate/portal/my_account.py).
FLOWS.update({flow.name: flow for flow in [CHANGE_PHONE, CHANGE_EMAIL]})
# Setup → My Account → Sign-in methods (caregate/factors/flows.py).
FLOWS.update({flow.name: flow for flow in FACTOR_FLOWS})
FLOWS[ADD_PASSKEY.name] = ADD_PASSKEY
