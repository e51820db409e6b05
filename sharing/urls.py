from __future__ import annotations

from django.urls import path

from sharing import views

urlpatterns = [
    path("sharing/", views.sharing_list, name="sharing-list"),
    path("sharing/send/", views.sharing_send, name="sharing-send"),
    path("sharing/pushes/<int:push_id>/status/", views.push_status, name="sharing-push-status"),
]
