from __future__ import annotations

from django.urls import path

from flags.views import office, patient, services_activity

urlpatterns = [
    # The patient's side.
    path("flags/", patient.flags_mine, name="flags-mine"),
    path("flags/new/", patient.flag_new, name="flags-new"),
    path("flags/notices/read/", patient.notices_read, name="flags-notices-read"),
    path("flags/<int:flag_id>/", patient.flag_detail, name="flags-detail"),
    path("flags/<int:flag_id>/reply/", patient.flag_reply, name="flags-reply"),
    # The privacy office (officers only; 404 for everyone else).
    path("privacy-office/", office.queue, name="flags-queue"),
    path("privacy-office/dashboard/", office.dashboard, name="flags-dashboard"),
    path("privacy-office/flags/<int:flag_id>/", office.officer_detail, name="flags-officer-detail"),
    path("privacy-office/flags/<int:flag_id>/claim/", office.claim, name="flags-claim"),
    path("privacy-office/flags/<int:flag_id>/assign/", office.assign, name="flags-assign"),
    path("privacy-office/flags/<int:flag_id>/note/", office.note, name="flags-note"),
    path("privacy-office/flags/<int:flag_id>/message/", office.message, name="flags-message"),
    path("privacy-office/flags/<int:flag_id>/status/", office.status, name="flags-status"),
    path("privacy-office/flags/<int:flag_id>/integrity-recheck/", office.integrity_recheck, name="flags-integrity-recheck"),
    path("privacy-office/flags/<int:flag_id>/incident/", office.incident, name="flags-incident"),
    path("privacy-office/service-accounts/", services_activity.service_activity, name="flags-service-activity"),
]
