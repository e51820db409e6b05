from __future__ import annotations

from django.urls import path

from notices import views

urlpatterns = [
    path("notices/", views.notice_list, name="notices-list"),
    path("notices/<int:notice_id>/read/", views.notice_read, name="notices-read"),
    path("notices/read-all/", views.notices_read_all, name="notices-read-all"),
]
