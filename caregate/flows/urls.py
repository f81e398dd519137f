"""Every flow's stages, cancel link and call status: /<flow>/<stage>/.

These patterns come first in the URLconf (most requests of a sign-in are flow stages, and
Django tries patterns in order: last, each stage request walked every other app's
patterns first). The ``flow`` converter matches only the name of a registered flow, so a
two-segment address of another page (/login/start/, /setup/users/) never lands here.
"""

from django.urls import path, register_converter

from caregate.flows import views
from caregate.flows.registry import FLOWS


class FlowName:
    """A registered flow's name. Looked up when matched (tests add flows to FLOWS); a
    ValueError tells Django the pattern does not match, and it tries the next one."""

    regex = "[-a-zA-Z0-9_]+"

    def to_python(self, value: str) -> str:
        if value not in FLOWS:
            raise ValueError(value)
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(FlowName, "flow")

app_name = "flows"
urlpatterns = [
    path("<flow:flow_name>/cancel/", views.cancel, name="cancel"),
    path("<flow:flow_name>/call-status.json", views.call_status, name="call-status"),
    path("<flow:flow_name>/<slug:stage_key>/", views.stage, name="stage"),
]
