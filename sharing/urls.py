from __future__ import annotations

from django.urls import path

from sharing import views

urlpatterns = [
    path("sharing/", views.sharing_list, name="sharing-list"),
    path("sharing/send/", views.sharing_send, name="sharing-send"),
    path("sharing/pushes/<int:push_id>/status/", views.push_status, name="sharing-push-status"),
    path("sharing/pushes/<int:push_id>/stop/", views.push_stop, name="sharing-push-stop"),
    path("sharing/new/", views.share_new, name="sharing-new"),
    path("sharing/links/<int:share_id>/revoke/", views.share_revoke, name="sharing-revoke"),
    # The recipient's pages (no account): the token is any string up to the next slash; a
    # malformed or unknown one gets the same answer as a wrong code (sharing.links).
    path("s/<str:token>/", views.share_open, name="sharing-open"),
    path("s/<str:token>/code/", views.share_open_verify, name="sharing-open-verify"),
    path("s/<str:token>/studies/", views.share_open_studies, name="sharing-open-studies"),
    path("s/<str:token>/download/", views.share_open_download, name="sharing-open-download"),
    path("s/<str:token>/studies/<int:study_id>/series/<int:series_id>/", views.share_open_viewer, name="sharing-open-viewer"),
    path(
        "s/<str:token>/studies/<int:study_id>/series/<int:series_id>/instances/<int:instance_id>/frames/<int:frame>.png",
        views.share_open_frame, name="sharing-open-frame",
    ),
]
