"""Every flow, by name: the one list the URLconf resolves against."""

from __future__ import annotations

from caregate.flows.email_login import EMAIL_LOGIN
from caregate.flows.engine import Flow
from caregate.flows.forgot_password import FORGOT_PASSWORD
from caregate.flows.mfa_registration import COMPLETE_REGISTRATION, MFA_REGISTRATION
from caregate.flows.new_provider_registration import REGISTER
from caregate.flows.phone_login import PHONE_LOGIN

FLOWS: dict[str, Flow] = {
    flow.name: flow
    for flow in [
        EMAIL_LOGIN,
        PHONE_LOGIN,
        REGISTER,
        MFA_REGISTRATION,
        COMPLETE_REGISTRATION,
        FORGOT_PASSWORD,
    ]
}
