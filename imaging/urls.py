from __future__ import annotations

from django.urls import path

from imaging import views

urlpatterns = [
    path("", views.home, name="home"),
    path("studies/<int:study_id>/", views.study_detail, name="imaging-study"),
    path("studies/<int:study_id>/report/", views.report, name="imaging-report"),
    path("studies/<int:study_id>/series/<int:series_id>/view/", views.viewer, name="imaging-viewer"),
    path("studies/<int:study_id>/series/<int:series_id>/view.json", views.viewer_data, name="imaging-viewer-data"),
    path("studies/<int:study_id>/series/<int:series_id>/thumbnail.png", views.series_thumbnail, name="imaging-thumbnail"),
    path(
        "studies/<int:study_id>/series/<int:series_id>/instances/<int:instance_id>/frames/<int:frame>.png",
        views.frame,
        name="imaging-frame",
    ),
    path(
        "studies/<int:study_id>/series/<int:series_id>/instances/<int:instance_id>/download/",
        views.download_image,
        name="imaging-download",
    ),
    path(
        "studies/<int:study_id>/series/<int:series_id>/instances/<int:instance_id>/document.pdf",
        views.document_pdf,
        name="imaging-document",
    ),
    path("verify/", views.verify_copy, name="imaging-verify"),
]
