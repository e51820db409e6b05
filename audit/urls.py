from __future__ import annotations

from django.urls import path

# Imported for its side effect too: the API registers its operations in the OpenAPI document.
from audit import api, views

urlpatterns = [
    path("access-log/", views.access_log, name="audit-log"),
    path("access-log/download.csv", views.access_log_csv, name="audit-log-csv"),
    path("access-log/receipt.json", views.access_log_receipt, name="audit-log-receipt"),
    path("access-log/notifications/", views.preferences, name="audit-preferences"),
    path("api/v1/audit/events", api.events, name="audit-api-events"),
]
