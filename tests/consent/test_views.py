"""The patient's consent pages: failure cases, reauthentication, confirmation, per-study
exceptions, policy re-confirmation, history, receipts and the partner page."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AccessEvent
from audit.services import record_access
from consent import receipts, selectors
from consent.models import ConsentDecision, Recipient
from consent.services import consent_policy_publish
from tests.conftest import login_password_only, login_verified, reauthenticate
from tests.factories import PASSWORD, actor_of

pytestmark = pytest.mark.django_db

REAUTH = "/accounts/reauthenticate/"


def choose(client, scope: str, decision: str, study=None):
    data = {"decision": decision}
    if study is not None:
        data["study"] = str(study.pk)
    return client.post(f"/consent/change/{scope}/", data)


def patient_pages(client, patient, policy) -> dict[str, str]:
    """Every patient page, with a receipt of the patient's own for the receipt pages."""
    reauthenticate(client)
    choose(client, "research", "granted")
    receipt_id = ConsentDecision.objects.get(patient=patient.patient).receipt_id
    return {
        "home": "/consent/",
        "change": "/consent/change/research/",
        "history": "/consent/history/",
        "receipt": f"/consent/receipts/{receipt_id}/",
        "receipt_json": f"/consent/receipts/{receipt_id}/receipt.json",
        "policy": "/consent/policy/",
        "partners": "/consent/partners/",
    }


# --- Failure cases, every page ---------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_login(client, patient, policy):
    pages = patient_pages(login_verified(client, patient), patient, policy)
    client.logout()
    for name, url in pages.items():
        response = client.get(url)
        assert response.status_code == 302, name
        assert response["Location"].startswith("/accounts/login/"), name


def test_password_only_sessions_are_sent_to_the_second_factor(client, patient, policy):
    pages = patient_pages(login_verified(client, patient), patient, policy)
    client.logout()
    login_password_only(client, patient)
    for name, url in pages.items():
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            assert response.status_code == 302, (name, method)
            assert response["Location"].startswith("/account/2fa/"), (name, method)


def test_another_patients_receipt_is_404_like_a_missing_one(client, patient, other_patient, policy):
    pages = patient_pages(login_verified(client, patient), patient, policy)
    login_verified(client, other_patient)
    for name in ("receipt", "receipt_json"):
        assert client.get(pages[name]).status_code == 404
    missing = "/consent/receipts/00000000-0000-0000-0000-000000000001/"
    assert client.get(missing).status_code == 404


def test_another_patients_study_is_404(patient_client, other_study, policy):
    reauthenticate(patient_client)
    assert patient_client.get(f"/consent/change/research/?study={other_study.pk}").status_code == 404
    response = patient_client.post("/consent/change/research/", {"decision": "granted", "study": str(other_study.pk)})
    assert response.status_code == 404
    assert not ConsentDecision.objects.exists()


def test_unknown_scope_is_404(patient_client, policy):
    reauthenticate(patient_client)
    assert patient_client.get("/consent/change/marketing/").status_code == 404


def test_wrong_methods_are_405(patient_client, patient, policy):
    pages = patient_pages(patient_client, patient, policy)
    for name in ("home", "history", "receipt", "receipt_json", "partners"):
        assert patient_client.post(pages[name]).status_code == 405, name
    for name in ("change", "policy"):
        assert patient_client.put(pages[name]).status_code == 405, name


# --- Cards ---------------------------------------------------------------------------------------


def test_four_cards_and_nothing_allowed_by_default(patient_client, policy):
    response = patient_client.get("/consent/")
    assert response.status_code == 200
    html = response.content.decode()
    for title in ("AI training", "Research", "Commercial licensing", "Teaching"):
        assert f">{title}</h2>" in html
    assert html.count("No, not allowed") == 4
    assert "cannot forget" in html  # what a withdrawal cannot undo
    assert response["Cache-Control"].startswith("no-store") or "no-store" in response["Cache-Control"]


def test_institution_default_is_a_setting(patient_client, patient, policy, settings):
    settings.CONSENT_DEFAULT = "granted"
    assert patient_client.get("/consent/").content.decode().count("Yes, allowed") == 4
    assert selectors.effective_consent(patient.patient, "research").allowed


def _intro(html: str) -> str:
    """The page's opening summary and default sentence, as text."""
    start = html.index('id="consent-summary"')
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html[start:html.index("consent-cards", start)]))


def test_the_intro_says_what_the_patients_own_choices_allow(patient_client, patient, policy):
    """Issue 19 item 13: "Until you say yes, your scans are not used" sat above a card saying
    "Yes, allowed". The intro now states the patient's choices, then the default."""
    reauthenticate(patient_client)
    choose(patient_client, "research", "granted")
    intro = _intro(patient_client.get("/consent/").content.decode())
    assert "Until you say yes" not in intro
    assert "Right now you allow: Research." in intro
    assert "Not allowed: AI training, Commercial licensing, Teaching." in intro
    assert "Where you have not chosen, the answer is no until you say yes." in intro


def test_the_intro_with_no_choices_follows_the_configured_default(patient_client, policy, settings):
    intro = _intro(patient_client.get("/consent/").content.decode())
    assert "Until you say yes, your scans are not used for any of these." in intro
    settings.CONSENT_DEFAULT = "granted"
    intro = _intro(patient_client.get("/consent/").content.decode())
    assert "Until you say yes" not in intro
    assert "Right now you allow: AI training, Research, Commercial licensing, Teaching." in intro
    assert "the hospital's default is yes" in intro


def test_the_intro_once_every_use_is_chosen(patient_client, policy, settings):
    settings.CONSENT_DEFAULT = "granted"
    reauthenticate(patient_client)
    for scope in ("ai_training", "research", "commercial", "teaching"):
        choose(patient_client, scope, "refused")
    intro = _intro(patient_client.get("/consent/").content.decode())
    assert "Right now your scans are not used for any of these." in intro
    assert "the hospital's default no longer applies to you" in intro


# --- Changing a choice ------------------------------------------------------------------------


def test_changing_a_choice_needs_a_fresh_reauthentication(patient_client, patient, policy):
    response = patient_client.get("/consent/change/ai_training/?decision=granted")
    assert response.status_code == 302 and response["Location"].startswith(REAUTH)
    response = choose(patient_client, "ai_training", "granted")
    assert response.status_code == 302 and response["Location"].startswith(REAUTH)
    assert not ConsentDecision.objects.exists()


def test_a_choice_posted_before_the_password_is_made_once_it_is_confirmed(patient_client, patient, policy):
    """allauth resumes the suspended POST after the password page; the service then sees the
    request's Actor as re-authenticated (it is built when first used, after the password)."""
    response = choose(patient_client, "research", "granted")
    assert response.status_code == 302 and response["Location"].startswith(REAUTH)
    response = patient_client.post(response["Location"], {"password": PASSWORD})
    decision = ConsentDecision.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/consent/receipts/{decision.receipt_id}/"
    assert (decision.scope, decision.decision, decision.actor) == ("research", "granted", patient)
    assert AccessEvent.objects.filter(action="modify").count() == 1


def test_the_service_checks_reauthentication_again(patient, policy):
    """Called without the view's check (a future caller), the service still refuses."""
    from allauth.core.exceptions import ReauthenticationRequired

    from consent.services import consent_decision_record

    with pytest.raises(ReauthenticationRequired):
        consent_decision_record(actor=actor_of(patient, reauthenticated=False), scope="research", decision="granted")
    assert not ConsentDecision.objects.exists()


def test_confirmation_then_change_records_decision_receipt_and_access_event(patient_client, patient, policy):
    reauthenticate(patient_client)
    page = patient_client.get("/consent/change/ai_training/?decision=granted")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Please confirm: you are saying yes" in html
    assert "cannot forget" in html
    response = choose(patient_client, "ai_training", "granted")
    decision = ConsentDecision.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/consent/receipts/{decision.receipt_id}/"
    assert (decision.scope, decision.decision, decision.study, decision.channel) == ("ai_training", "granted", None, "portal")
    assert decision.actor == patient and decision.policy == policy
    event = AccessEvent.objects.get(action="modify")
    assert event.patient == patient.patient and event.purpose == "patient_request" and event.actor_type == "patient"
    assert event.details["receipt_id"] == str(decision.receipt_id) and event.details["consent_scope"] == "ai_training"
    assert receipts.verify(decision.receipt)["decision"] == "granted"
    home = patient_client.get("/consent/").content.decode()
    assert home.count("Yes, allowed") == 1


def test_an_invalid_choice_is_a_400_and_records_nothing(patient_client, policy):
    reauthenticate(patient_client)
    assert choose(patient_client, "research", "maybe").status_code == 400
    assert not ConsentDecision.objects.exists()


def test_per_study_exception_overrides_the_general_choice(patient_client, patient, policy, studies):
    ct, mr = studies
    reauthenticate(patient_client)
    choose(patient_client, "research", "granted")
    choose(patient_client, "research", "refused", study=mr)
    record = patient.patient
    assert selectors.effective_consent(record, "research", ct).allowed
    assert not selectors.effective_consent(record, "research", mr).allowed
    assert selectors.effective_consent(record, "research").allowed
    html = patient_client.get("/consent/").content.decode()
    assert "Exceptions for single scans" in html and "MR brain" in html
    # Changing the general choice later leaves the exception standing.
    choose(patient_client, "research", "refused")
    choose(patient_client, "research", "granted")
    assert not selectors.effective_consent(record, "research", mr).allowed


def test_history_lists_every_decision_with_who_and_policy(patient_client, patient, officer, policy):
    reauthenticate(patient_client)
    choose(patient_client, "ai_training", "refused")
    choose(patient_client, "ai_training", "granted")
    html = patient_client.get("/consent/history/").content.decode()
    assert html.count("/consent/receipts/") == 2
    assert "You, online" in html and "Version 1" in html
    assert AccessEvent.objects.filter(action="view", details__page="consent_history").count() == 1


def test_empty_history_has_a_clear_empty_state(patient_client, policy):
    assert "You have not made any choices yet" in patient_client.get("/consent/history/").content.decode()


def test_receipt_page_and_signed_json(patient_client, patient, policy):
    reauthenticate(patient_client)
    choose(patient_client, "teaching", "granted")
    decision = ConsentDecision.objects.get()
    page = patient_client.get(f"/consent/receipts/{decision.receipt_id}/").content.decode()
    assert str(decision.receipt_id) in page and policy.sha256 in page and "Download signed receipt" in page
    response = patient_client.get(f"/consent/receipts/{decision.receipt_id}/receipt.json")
    assert response["Content-Disposition"] == f'attachment; filename="consent-receipt-{decision.receipt_id}.json"'
    document = json.loads(response.content)
    body = receipts.verify(document)
    assert body["receipt_id"] == str(decision.receipt_id)
    assert body["controller"]["name"] == "St. Example Hospital"
    assert body["subject"]["pseudonym"] == receipts.subject_pseudonym(patient.patient.pk)
    assert patient.patient.name not in response.content.decode() and patient.patient.mrn not in response.content.decode()
    assert body["purposes"][0]["purpose"] == "teaching" and body["decision"] == "granted"
    assert body["policy"] == {"version": 1, "sha256": policy.sha256} and body["channel"] == "portal"
    assert AccessEvent.objects.filter(action="download", details__page="consent_receipt_json").count() == 1


# --- Policy versions ---------------------------------------------------------------------------


def test_new_policy_asks_to_confirm_and_old_decisions_stand_until_then(patient_client, patient, policy):
    reauthenticate(patient_client)
    choose(patient_client, "research", "granted")
    choose(patient_client, "ai_training", "refused")
    v2 = consent_policy_publish(version=2, text="Version two.", changes="Vendors must delete copies within 30 days.")
    home = patient_client.get("/consent/").content.decode()
    assert "The policy has changed (version 2)" in home
    assert selectors.effective_consent(patient.patient, "research").decision.policy == policy
    page = patient_client.get("/consent/policy/").content.decode()
    assert "Vendors must delete copies within 30 days." in page and "Confirm my choices under version 2" in page

    response = patient_client.post("/consent/policy/")
    assert response.status_code == 302
    current = {s: selectors.effective_consent(patient.patient, s) for s in ("research", "ai_training")}
    assert current["research"].allowed and not current["ai_training"].allowed
    assert {a.decision.policy for a in current.values()} == {v2}
    assert {a.decision.kind for a in current.values()} == {"reconfirmation"}
    assert ConsentDecision.objects.count() == 4
    assert "The policy has changed" not in patient_client.get("/consent/").content.decode()


def test_policy_confirmation_needs_reauthentication(patient_client, patient, policy):
    reauthenticate(patient_client)
    choose(patient_client, "research", "granted")
    consent_policy_publish(version=2, text="Version two.")
    fresh = login_verified(Client(), patient)  # signed in with both factors, password not re-entered
    response = fresh.post("/consent/policy/")
    assert response.status_code == 302 and response["Location"].startswith(REAUTH)
    assert ConsentDecision.objects.count() == 1


# --- Uses before opting out, partners ----------------------------------------------------------


def _vendor_use(patient, when, organization="Acme AI Triage", purpose="ai_training", action="view"):
    return record_access(patient=patient, action=action, purpose=purpose, actor_type="ai_vendor", actor_name="pipeline",
                         organization=organization, source="api", occurred_at=when)


def test_uses_made_before_opting_out_are_shown_with_a_link_to_the_log(patient_client, patient, policy):
    reauthenticate(patient_client)
    choose(patient_client, "ai_training", "granted")
    _vendor_use(patient.patient, timezone.now() - dt.timedelta(minutes=1))
    _vendor_use(patient.patient, timezone.now() - dt.timedelta(seconds=30))
    choose(patient_client, "ai_training", "refused")
    html = patient_client.get("/consent/").content.decode()
    assert "Your scans were used 2 times for this before you said no." in html
    assert "/access-log/?purpose=ai_training&amp;until=" in html


def test_partners_page_shows_who_received_and_who_used_the_scans(patient_client, patient, other_patient, policy):
    Recipient.objects.create(name="Acme AI Triage", kind="ai_vendor", scope="ai_training", receives="deidentified",
                             purpose="Triage tool.", retention="5 years")
    Recipient.objects.create(name="Northgate University Research", kind="researcher", scope="research",
                             receives="identified", purpose="Lung studies.", retention="10 years")
    _vendor_use(patient.patient, timezone.now() - dt.timedelta(days=3))
    _vendor_use(patient.patient, timezone.now() - dt.timedelta(days=2), action="consent_check")
    _vendor_use(other_patient.patient, timezone.now(), organization="Northgate University Research", purpose="research")
    response = patient_client.get("/consent/partners/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Acme AI Triage" in html and "Northgate University Research" in html
    assert "Identified images" in html and "5 years" in html
    assert "Once, on" in html and "asked about your consent once" in html
    assert "/access-log/?organization=Acme%20AI%20Triage" in html
    assert "Never" in html  # the other patient's use is not theirs
    assert 'href="/consent/#scope-ai_training"' in html
    assert AccessEvent.objects.filter(patient=patient.patient, details__page="consent_partners").count() == 1


# --- The privacy office ------------------------------------------------------------------------


def test_officer_records_a_paper_decision(client, officer, patient, policy, studies):
    login_verified(client, officer)
    reauthenticate(client)
    record = patient.patient
    response = client.post("/consent/office/record/", {
        "issuer": record.issuer, "mrn": record.mrn, "scope": "teaching", "decision": "refused", "channel": "paper",
        "study_uid": studies[0].study_uid, "note": "Form 12",
    })
    assert response.status_code == 302
    decision = ConsentDecision.objects.get()
    assert (decision.channel, decision.actor, decision.study, decision.note) == ("paper", officer, studies[0], "Form 12")
    assert decision.receipt["receipt"]["recorded_by"] == "privacy_office"
    event = AccessEvent.objects.get(action="modify")
    assert event.actor_type == "privacy_office" and event.purpose == "patient_request"
    # The patient sees it in their history, with the channel.
    login_verified(client, patient)
    assert "Privacy office · Paper form" in client.get("/consent/history/").content.decode()


def test_officer_form_rejects_unknown_patients_and_is_hidden_from_patients(client, officer, patient_client, policy):
    reauthenticate(patient_client)
    assert patient_client.get("/consent/office/record/").status_code == 404
    login_verified(client, officer)
    reauthenticate(client)
    response = client.post("/consent/office/record/", {"issuer": "X", "mrn": "nobody", "scope": "teaching", "decision": "refused", "channel": "phone"})
    assert response.status_code == 400 and "No patient with this issuer and MRN." in response.content.decode()
    assert not ConsentDecision.objects.exists()
