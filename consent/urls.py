from __future__ import annotations

from django.urls import path

from consent import api, views

urlpatterns = [
    path("consent/", views.home, name="consent-home"),
    path("consent/change/<slug:scope>/", views.change, name="consent-change"),
    path("consent/history/", views.history, name="consent-history"),
    path("consent/receipts/<uuid:receipt_id>/", views.receipt, name="consent-receipt"),
    path("consent/receipts/<uuid:receipt_id>/receipt.json", views.receipt_json, name="consent-receipt-json"),
    path("consent/policy/", views.policy, name="consent-policy"),
    path("consent/partners/", views.partners, name="consent-partners"),
    path("consent/office/record/", views.office_record, name="consent-office-record"),
    path("api/v1/consent/check", api.check, name="consent-api-check"),
    path("api/v1/consent/cohort", api.cohort, name="consent-api-cohort"),
    path("api/v1/fhir/Consent", api.fhir_consent, name="consent-api-fhir"),
]
