from django.urls import path

from caregate.delivery import views, webhooks

app_name = "delivery"
urlpatterns = [
    path("dev/outbox/", views.outbox, name="outbox"),
    path("dev/outbox.json", views.outbox_json, name="outbox-json"),
    path("dev/outbox/<int:message_id>/answer", views.answer_call, name="outbox-answer"),
    path("dev/outbox/<int:message_id>/decline", views.decline_call, name="outbox-decline"),
    path("twilio/voice/<str:token>/answer", webhooks.answer, name="twiml-answer"),
    path("twilio/voice/<str:token>/gather", webhooks.gather, name="twiml-gather"),
    path("twilio/voice/<str:token>/status", webhooks.status, name="twiml-status"),
    path("twilio/sms/<str:token>/status", webhooks.sms_status, name="sms-status"),
    path("delivery/<slug:flow_name>/status.json", views.delivery_status, name="status"),
]
