from django.urls import path

from caregate.flows import views

app_name = "flows"
urlpatterns = [
    path("<slug:flow_name>/cancel/", views.cancel, name="cancel"),
    path("<slug:flow_name>/call-status.json", views.call_status, name="call-status"),
    path("<slug:flow_name>/<slug:stage_key>/", views.stage, name="stage"),
]
