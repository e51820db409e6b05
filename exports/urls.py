from __future__ import annotations

from django.urls import path

from exports import views

urlpatterns = [
    path("exports/", views.export_list, name="exports-list"),
    path("exports/new/", views.export_new, name="exports-new"),
    path("exports/<int:export_id>/", views.export_detail, name="exports-detail"),
    path("exports/<int:export_id>/status/", views.export_status, name="exports-status"),
    path("exports/<int:export_id>/cancel/", views.export_cancel, name="exports-cancel"),
    path("exports/<int:export_id>/download/", views.export_download, name="exports-download"),
    path("exports/<int:export_id>/revoke/", views.export_revoke, name="exports-revoke"),
    path("exports/<int:export_id>/seen/", views.export_seen, name="exports-seen"),
]
