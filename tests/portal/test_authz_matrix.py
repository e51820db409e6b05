"""The authorization matrix (docs/security.md §9-12): every route x every principal x every kind of id.

Generated from the URL resolver: every pattern (ours, allauth's, the admin's, django-otp-webauthn's
and the APIs) must have an explicit entry in ``TABLE`` saying who gets what. A new route without
one fails ``test_every_route_has_an_entry``; an entry whose route is gone fails
``test_every_entry_names_a_route``; a model newly registered in the admin fails
``test_the_admin_lists_exactly_the_reviewed_models``. Each route is then requested by

- every kind of principal the Actor has: anonymous, a password-only session (patient A's own, no
  second factor), patient A, patient B, a privacy officer, an administrator (staff; these four
  verified and freshly reauthenticated, so views that ask for the password again run to the
  end), and a service token of each scope (audit:write, consent:read), which is nobody on a
  browser page (the login page) and is answered per scope by the APIs;
- every kind of id it takes, in the URL or in the query string or form where a page takes one
  there: A's object, B's object, a well-formed missing one, a malformed one (for integer ids one
  too big for any database column, which still matches the URL pattern), and for nested routes a
  mix (A's study with B's series). Admin pages are asked with one existing row: only the
  administrator may open them, and only to do what each model's admin allows (append-only
  records are view-only; an empty form or an unconfirmed delete writes nothing). Where a
  principal is turned away by the middleware whatever the id (login page, second factor), A's id
  stands for the others (see ``_variants``);
- with GET, and with POST where the route accepts POST (a form body where it matters).

Each answer is checked for its status and where a redirect goes; for leaks, so that no response
carries a patient's identifying data (name, MRN, study UID, accession, email, receipt id, the
organisations in their access log, their report's text) to anyone but that patient, except where
an entry says so (the officer's page of a flag they hold; the consent API for a consent:read
token; accounts' emails in the admin for the administrator); for "another patient's object looks exactly like a missing one" (same status, content
type and body, once CSRF tokens and CSP nonces are masked; the request id is fixed); and a
refused POST must write nothing (PostgreSQL's per-transaction row counters, so even a write
rolled back in a savepoint counts).

The objects are real: studies imported through the DICOM ingest, flags claimed by officers,
packaged exports, signed consent receipts. They are built once for the module, inside one
transaction rolled back at its end; each case runs in a savepoint of it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from allauth.usersessions.models import UserSession
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.backends.cached_db import SessionStore
from django.db import connection, transaction
from django.http import HttpResponse
from django.test import Client, override_settings
from django.test.client import ClientHandler
from django.urls import resolve
from django.urls.exceptions import Resolver404
from django.utils import timezone
from django.utils.http import int_to_base36

from accounts.models import AuthenticatorApp, SignInEvent, User
from accounts.services import activation_code_issue, recovery_codes_generate, service_account_create
from audit.checkpoints import checkpoint_create
from audit.models import AccessEvent
from audit.services import record_access
from consent.models import ConsentDecision, Recipient
from consent.services import _write_decision, consent_policy_publish
from exports import services as export_services
from exports.models import ExportRequest
from flags import services as flag_services
from flags.models import Flag
from imaging.models import Instance, PacsPatientSync, PacsSyncRun, Patient, Series, Study
from notices.models import Notice
from proxies.middleware import required_capability
from proxies.models import ProxyGrant
from proxies.selectors import SESSION_KEY as PROXY_SESSION_KEY
from proxies.services import SCOPE_ALLOWS, proxy_code_issue, proxy_code_redeem
from sharing import links as share_links
from sharing.models import Partner, Push, Share, ShareVisit
from tests.conftest import login_password_only, login_verified, reauthenticate
from tests.exports.conftest import make_study
from tests.factories import AuthenticatorAppFactory, PatientFactory, UserFactory, actor_of
from tests.routes import Route, all_routes

# --- Principals ------------------------------------------------------------------------------

ANON, PASSWORD_ONLY, A, B, OFFICER, ADMIN = "anonymous", "password_only", "patient_a", "patient_b", "officer", "administrator"
AUDIT_TOKEN, CONSENT_TOKEN = "token_audit_write", "token_consent_read"
# A clinician with no account who opened A's share link with both codes (sharing.links): their
# session holds open visits of A's share, of another share of A's later revoked and of one
# later expired. Everywhere but the share's own pages they are a visitor.
RECIPIENT = "share_recipient"
# People with their own account acting for A under a proxy grant of each scope (proxies/,
# docs/security.md §28): they get what A gets on the pages their scope opens, a 403 that says why
# on every other page; on account pages they are themselves (A's objects are another's).
PROXY_VIEW, PROXY_CONSENT, PROXY_FULL = "proxy_view", "proxy_consent", "proxy_full"
PROXIES = {PROXY_VIEW: "view", PROXY_CONSENT: "view+consent", PROXY_FULL: "full"}
PRINCIPALS = (ANON, PASSWORD_ONLY, A, B, OFFICER, ADMIN, AUDIT_TOKEN, CONSENT_TOKEN, RECIPIENT, *PROXIES)
VERIFIED = (A, B, OFFICER, ADMIN, *PROXIES)
TOKENS = (AUDIT_TOKEN, CONSENT_TOKEN)
# Whose objects a patient owns: A's ids are the variant "a", B's are "b". On the office's side the
# officer holds A's flag, and another officer holds B's.
OWNS = {A: "a", B: "b"}


# --- What a request should get ---------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    status: int
    to: str = ""  # a redirect's Location starts with this
    like_missing: bool = False  # the body is the one a missing id gets (same status)
    unchanged: bool = False  # a POST that must leave the database as it was

    def __str__(self) -> str:
        return f"{self.status}{' -> ' + self.to if self.to else ''}{' (like missing)' if self.like_missing else ''}"


OK = Expect(200)
LOGIN = Expect(302, "/accounts/login/", unchanged=True)
FACTOR = Expect(302, "/account/2fa/", unchanged=True)
ADMIN_LOGIN = Expect(302, "/admin/login/", unchanged=True)
NOT_FOUND = Expect(404, unchanged=True)
HIDDEN = Expect(404, like_missing=True, unchanged=True)  # another's object: exactly like a missing one
FORBIDDEN = Expect(403, unchanged=True)
NOT_ALLOWED = Expect(405, unchanged=True)
NO_TOKEN = Expect(401, unchanged=True)
BAD_REQUEST = Expect(400, unchanged=True)


def to(prefix: str) -> Expect:
    return Expect(302, prefix)


Rule = Callable[[str, str], Expect]  # (principal, id variant) -> Expect


def everyone(expect: Expect) -> Rule:
    return lambda principal, variant: expect


def who(*, visitor: Expect, password_only: Expect, verified: Rule | Expect) -> Rule:
    """By session: ``visitor`` for anonymous requests and tokens (a token is nobody on a session
    page), ``password_only`` for A's session without the second factor, ``verified`` for the rest."""
    rule = verified if callable(verified) else everyone(verified)

    def decide(principal: str, variant: str) -> Expect:
        if principal in (ANON, RECIPIENT, *TOKENS):
            return visitor
        if principal == PASSWORD_ONLY:
            return password_only
        return rule(principal, variant)

    return decide


def gate(verified: Rule | Expect) -> Rule:
    """A session page behind the gate: visitors and tokens go to the login page, a password-only
    session to the second factor; ``verified`` says what the others get."""
    return who(visitor=LOGIN, password_only=FACTOR, verified=verified)


def by_role(*, patient: Expect, officer: Expect, admin: Expect | None = None) -> Rule:
    """By the verified principal's role. An administrator, like an officer, has no patient record
    of their own: unless ``admin`` says otherwise, they get what the officer gets."""
    admin = officer if admin is None else admin
    return lambda principal, variant: {OFFICER: officer, ADMIN: admin}.get(principal, patient)


def owned(
    ok: Expect, *, missing: Expect = NOT_FOUND, others: Expect = HIDDEN, officer: Expect | None = None,
    admin: Expect | None = None,
) -> Rule:
    """An object of one patient: the owner gets ``ok``; anyone else, a mixed or malformed id gets
    exactly what a missing id gets. ``officer`` (and ``admin``, which defaults to it): what the
    staff without a patient record get whatever the id, where that differs."""
    admin = officer if admin is None else admin

    def decide(principal: str, variant: str) -> Expect:
        if officer is not None and principal == OFFICER:
            return officer
        if admin is not None and principal == ADMIN:
            return admin
        if variant == "missing":
            return missing
        if principal in (A, B) and OWNS[principal] == variant:
            return ok
        return others

    return decide


def held(ok: Expect) -> Rule:
    """A flag on the office's side: only the officer holding it gets ``ok``; everyone else
    (patients included, even the flag's own patient) gets what a missing flag gets."""

    def decide(principal: str, variant: str) -> Expect:
        if variant == "missing":
            return NOT_FOUND
        return ok if principal == OFFICER and variant == "a" else HIDDEN

    return decide


def api(ok: Rule | Expect, *, scope: str) -> Rule:
    """A bearer-token API: sessions are ignored (401), the other scope is refused (403)."""
    rule = ok if callable(ok) else everyone(ok)

    def decide(principal: str, variant: str) -> Expect:
        if principal not in TOKENS:
            return NO_TOKEN
        if principal != scope:
            return FORBIDDEN
        return rule(principal, variant)

    return decide


TO_CODE = Expect(302, "/s/", unchanged=True)  # a share's page without an open visit: the code form


def recipient(ok: Expect, *, refused: Expect = TO_CODE) -> Rule:
    """A page of a share link (no account, no gate). Only the recipient with an open visit of A's
    share gets ``ok``, for what that share holds; anything else they ask for under it (a missing
    id, another patient's or another share's study) is a 404 like a missing one. A revoked or
    expired share, a share they never opened (B's), and anyone without a visit (signed-in
    patients too: an account opens no share) get ``refused``: the code form (an image: a 404)."""

    def decide(principal: str, variant: str) -> Expect:
        if principal != RECIPIENT or variant in ("b", "revoked", "expired"):
            return refused
        if variant == "a":
            return ok
        return NOT_FOUND if variant == "missing" else HIDDEN

    return decide


def by_variant(**expects: Expect) -> Rule:
    return lambda principal, variant: expects[variant]


@dataclass(frozen=True)
class Entry:
    get: Rule
    post: Rule | None = None  # None: the route takes no POST, so none is sent
    ids: str | None = None  # the kind of ids (see VARIANTS) it takes, in the URL, query or form
    body: Callable[[World, str], dict] | None = None  # the POST body
    json: bool = False  # send the body as JSON
    sees: dict[str, set[str]] = field(default_factory=dict)  # whose data a principal may see here


POST_ONLY = gate(NOT_ALLOWED)  # GET on a POST-only session route, once past the gate
SIGNED_IN_GO_HOME = who(visitor=OK, password_only=to("/"), verified=to("/"))  # sign-in and signup pages
SIGNED_OUT = Expect(302, "/accounts/login/")


# --- The table -----------------------------------------------------------------------------------
# One entry per route name (or pattern, for unnamed admin routes). Read a rule as "who gets what".

TABLE: dict[str, Entry] = {
    # Imaging: the patient's own studies; nested ids must all belong together.
    "home": Entry(gate(by_role(patient=OK, officer=to("/start/")))),
    "imaging-study": Entry(gate(owned(OK)), ids="study"),
    "imaging-viewer": Entry(gate(owned(OK)), ids="series"),
    "imaging-thumbnail": Entry(gate(owned(OK)), ids="series"),
    "imaging-viewer-data": Entry(gate(owned(OK)), ids="series"),  # the viewer's series strip (JSON)
    "imaging-report": Entry(gate(owned(OK)), ids="study"),  # a study without a report says so (200)
    # The world's instances are images, not PDFs: the owner's 404 is "no PDF in this file";
    # tests/imaging/test_reports.py covers a real PDF for its owner and for anyone else.
    "imaging-document": Entry(gate(owned(NOT_FOUND)), ids="instance"),
    "imaging-frame": Entry(gate(owned(OK)), ids="frame"),
    "imaging-download": Entry(gate(owned(OK)), ids="instance"),
    # Verifying a copy compares uploads with the signed-in patient's own files; an officer may
    # open the page (no record, nothing compared). An empty upload is a form error.
    "imaging-verify": Entry(gate(OK), post=gate(by_role(patient=BAD_REQUEST, officer=OK))),
    # Access log.
    # The log's filters offer only the patient's own studies: another's is ignored, not shown.
    "audit-log": Entry(gate(OK), ids="log_filter"),
    "audit-log-csv": Entry(gate(by_role(patient=OK, officer=NOT_FOUND)), ids="log_filter"),
    # The receipt of the patient's own log (hashes and ids only); no record of one's own: 404.
    "audit-log-receipt": Entry(gate(by_role(patient=OK, officer=NOT_FOUND))),
    "audit-preferences": Entry(
        gate(by_role(patient=OK, officer=NOT_FOUND)),
        post=gate(by_role(patient=to("/access-log/notifications/"), officer=NOT_FOUND)),
        body=lambda w, v: {"new_organization": "on"},
    ),
    "audit-api-events": Entry(
        everyone(NOT_ALLOWED),  # the API answers the method before the token
        post=api(by_variant(a=OK, b=OK, missing=OK, mixed=OK, malformed=BAD_REQUEST), scope=AUDIT_TOKEN),
        ids="api_event",
        body=lambda w, v: w.api_event_body(v),
        json=True,
    ),
    # Consent.
    "consent-home": Entry(gate(OK)),
    "consent-change": Entry(
        gate(owned(OK, officer=HIDDEN)),
        post=gate(owned(to("/consent/receipts/"), officer=HIDDEN)),
        ids="consent_study",
        body=lambda w, v: {"decision": "refused", **w.query(v, "consent_study")},
    ),
    "consent-history": Entry(gate(by_role(patient=OK, officer=NOT_FOUND))),
    "consent-receipt": Entry(gate(owned(OK)), ids="receipt"),
    "consent-receipt-json": Entry(gate(owned(OK)), ids="receipt"),
    "consent-policy": Entry(gate(OK), post=gate(by_role(patient=to("/consent/"), officer=NOT_FOUND))),
    "consent-partners": Entry(gate(by_role(patient=OK, officer=NOT_FOUND))),
    # The office records a paper or phone decision for any patient: officers only.
    "consent-office-record": Entry(
        gate(by_role(patient=NOT_FOUND, officer=OK, admin=NOT_FOUND)),
        post=gate(by_role(patient=NOT_FOUND, officer=OK, admin=NOT_FOUND)),  # an empty form is shown again
    ),
    # Consent API: a consent:read token may ask about any patient (that is its job); another
    # patient's study under this patient's MRN is "unknown", exactly like a missing one.
    "consent-api-check": Entry(
        api(by_variant(a=OK, b=OK, mixed=Expect(404, like_missing=True), missing=Expect(404), malformed=Expect(400)), scope=CONSENT_TOKEN),
        ids="api_check",
        sees={CONSENT_TOKEN: {"a", "b"}},
    ),
    "consent-api-cohort": Entry(
        everyone(NOT_ALLOWED),
        post=api(by_variant(a=OK, b=OK, missing=OK, malformed=BAD_REQUEST), scope=CONSENT_TOKEN),
        ids="api_cohort",
        body=lambda w, v: w.api_cohort_body(v),
        json=True,
        sees={CONSENT_TOKEN: {"a", "b"}},
    ),
    "consent-api-fhir": Entry(
        api(by_variant(a=OK, b=OK, missing=Expect(404), malformed=Expect(400)), scope=CONSENT_TOKEN),
        ids="api_fhir",
        sees={CONSENT_TOKEN: {"a", "b"}},
    ),
    # Exports: an officer has no studies to export (403); another patient's study in the form is
    # "not a valid choice", exactly like a missing one.
    "exports-list": Entry(gate(OK)),
    "exports-new": Entry(
        gate(by_role(patient=OK, officer=FORBIDDEN)),
        post=gate(owned(OK, missing=Expect(400, unchanged=True), others=Expect(400, like_missing=True, unchanged=True), officer=FORBIDDEN)),
        ids="export_study",
        body=lambda w, v: {"scope": "selected", "kind": "original", "studies": w.value(v, "export_study")},
    ),
    "exports-detail": Entry(gate(owned(OK)), ids="export"),
    "exports-status": Entry(gate(owned(OK)), ids="export"),
    "exports-cancel": Entry(POST_ONLY, post=gate(owned(to("/exports/"))), ids="export"),
    "exports-download": Entry(POST_ONLY, post=gate(owned(OK)), ids="export"),
    "exports-revoke": Entry(POST_ONLY, post=gate(owned(to("/exports/"))), ids="export"),
    # Dismissing the "ready" notice (a POST: GET never writes).
    "exports-seen": Entry(POST_ONLY, post=gate(owned(to("/exports/"))), ids="export"),
    # Sharing: the list is everyone's own (empty for staff); only a patient sends, and only their
    # own studies (another's is "not a valid choice", like a missing one); a push's progress is
    # its patient's only.
    "sharing-list": Entry(gate(OK)),
    "sharing-send": Entry(
        gate(by_role(patient=OK, officer=NOT_FOUND)),
        post=gate(owned(to("/sharing/"), missing=Expect(400, unchanged=True), others=Expect(400, like_missing=True, unchanged=True),
                        officer=NOT_FOUND)),
        ids="share_study",
        body=lambda w, v: {"studies": w.value(v, "share_study"), "partner": str(Partner.objects.get(name=MATRIX_PARTNER).pk)},
    ),
    "sharing-push-status": Entry(gate(owned(OK)), ids="push"),
    "sharing-push-stop": Entry(POST_ONLY, post=gate(owned(to("/sharing/"))), ids="push"),
    # Share links (issue 20), the patient's side: only a patient makes one, of their own studies
    # (the link and code shown once, 200); only the share's patient revokes it.
    "sharing-new": Entry(
        gate(by_role(patient=OK, officer=NOT_FOUND)),
        post=gate(owned(OK, missing=Expect(400, unchanged=True), others=Expect(400, like_missing=True, unchanged=True),
                        officer=NOT_FOUND)),
        ids="share_study",
        body=lambda w, v: {"studies": w.value(v, "share_study"), "recipient_name": "Dr Matrix",
                           "recipient_organization": "Matrix Clinic", "recipient_email": "dr@matrix.example",
                           "days": "7", "access": "view"},
    ),
    "sharing-revoke": Entry(POST_ONLY, post=gate(owned(to("/sharing/"))), ids="share"),
    # Proxies: using a code and switching are anyone's with an account (an empty form is
    # refused, switching to nobody shows one's own records); only the patient sees and ends theirs.
    "proxies-redeem": Entry(gate(OK), post=gate(BAD_REQUEST)),
    "proxies-switch": Entry(POST_ONLY, post=gate(to("/"))),
    "proxies-people": Entry(gate(by_role(patient=OK, officer=NOT_FOUND))),
    # Inviting: the patient's own, with the password again (fresh here); an empty form is refused.
    "proxies-invite": Entry(gate(by_role(patient=OK, officer=NOT_FOUND)), post=gate(by_role(patient=BAD_REQUEST, officer=NOT_FOUND))),
    "proxies-end": Entry(POST_ONLY, post=gate(owned(to("/people/"), officer=NOT_FOUND)), ids="grant"),
    "proxies-agree": Entry(POST_ONLY, post=gate(owned(to("/people/"), officer=NOT_FOUND)), ids="grant"),
    # The recipient's side: public pages. The code form looks the same for every token, and a
    # wrong code the same whatever the token (docs/security.md §27).
    "sharing-open": Entry(
        lambda p, v: Expect(200, like_missing=v != "missing"),
        post=lambda p, v: Expect(400, like_missing=v != "missing", unchanged=True),
        ids="share_token", body=lambda w, v: {"code": "AAAAA-AAAAA"},
    ),
    # The emailed code's form: for a browser that entered the access code (the recipient's visits);
    # their visits are already open, so a code is refused without counting a try.
    "sharing-open-verify": Entry(
        lambda p, v: OK if p == RECIPIENT and v in ("a", "revoked", "expired") else TO_CODE,
        post=lambda p, v: BAD_REQUEST if p == RECIPIENT and v in ("a", "revoked", "expired") else TO_CODE,
        ids="share_token", body=lambda w, v: {"otp": "000000"},
    ),
    "sharing-open-studies": Entry(lambda p, v: OK if p == RECIPIENT and v == "a" else TO_CODE, ids="share_token",
                                  sees={RECIPIENT: {"a"}}),
    # The archive of a view-and-download share (A's is view-only: a 404 to its own recipient).
    "sharing-open-download": Entry(
        everyone(NOT_ALLOWED), post=lambda p, v: NOT_FOUND if p == RECIPIENT and v == "a" else TO_CODE, ids="share_token",
    ),
    "sharing-open-viewer": Entry(recipient(OK), ids="share_series", sees={RECIPIENT: {"a"}}),
    "sharing-open-frame": Entry(recipient(OK, refused=NOT_FOUND), ids="share_frame", sees={RECIPIENT: {"a"}}),
    # Reports, the patient's side. "Flag this access" takes the access-log entry in the query.
    "flags-mine": Entry(gate(OK)),
    "flags-new": Entry(
        gate(owned(OK)),
        post=gate(owned(to("/flags/"))),
        ids="event_query",
        body=lambda w, v: {"category": "unfamiliar_accessor", "description": "I do not know them."},
    ),
    "flags-notices-read": Entry(POST_ONLY, post=gate(by_role(patient=to("/flags/"), officer=NOT_FOUND))),
    "flags-detail": Entry(gate(owned(OK)), ids="flag"),
    # The notification centre (issue 19): a patient's own notices; staff have none (404).
    "notices-list": Entry(gate(by_role(patient=OK, officer=NOT_FOUND))),
    "notices-read": Entry(POST_ONLY, post=gate(owned(to("/notices/"), officer=NOT_FOUND)), ids="notice"),
    "notices-read-all": Entry(POST_ONLY, post=gate(by_role(patient=to("/notices/"), officer=NOT_FOUND))),
    # Where signing in lands, by role: patients their scans, officers the queue, administrators a page.
    "portal-start": Entry(gate(by_role(patient=to("/"), officer=to("/privacy-office/"), admin=OK))),
    "flags-reply": Entry(POST_ONLY, post=gate(owned(to("/flags/"))), ids="flag", body=lambda w, v: {"text": "Here is more."}),
    # The privacy office: 404 to non-officers (administrators too); an officer opens only the
    # flags they hold.
    "flags-queue": Entry(gate(by_role(patient=NOT_FOUND, officer=OK, admin=NOT_FOUND))),
    "flags-dashboard": Entry(gate(by_role(patient=NOT_FOUND, officer=OK, admin=NOT_FOUND))),
    "flags-officer-detail": Entry(gate(held(OK)), ids="flag", sees={OFFICER: {"a"}}),
    # Claiming or taking over a flag another officer holds is refused like a missing flag.
    "flags-claim": Entry(POST_ONLY, post=gate(held(to("/privacy-office/flags/"))), ids="flag"),
    "flags-assign": Entry(
        POST_ONLY, post=gate(held(to("/privacy-office/flags/"))), ids="flag", body=lambda w, v: {"assignee": w.officer.pk}
    ),
    "flags-note": Entry(POST_ONLY, post=gate(held(to("/privacy-office/flags/"))), ids="flag", body=lambda w, v: {"text": "Checked."}),
    "flags-message": Entry(POST_ONLY, post=gate(held(to("/privacy-office/flags/"))), ids="flag", body=lambda w, v: {"text": "Thanks."}),
    "flags-status": Entry(
        POST_ONLY, post=gate(held(to("/privacy-office/flags/"))), ids="flag", body=lambda w, v: {"status": "dismissed", "resolution": "Fine."}
    ),
    "flags-integrity-recheck": Entry(POST_ONLY, post=gate(held(to("/privacy-office/flags/"))), ids="flag"),
    "flags-incident": Entry(POST_ONLY, post=gate(held(to("/privacy-office/flags/"))), ids="flag"),
    # The office's page of what connected systems did with the APIs (no patient data).
    "flags-service-activity": Entry(gate(by_role(patient=NOT_FOUND, officer=OK, admin=NOT_FOUND))),
    # Public.
    "portal-openapi": Entry(everyone(OK)),
    "portal-healthz": Entry(everyone(OK)),
    "portal-signing-key": Entry(everyone(OK)),
    "portal-webauthn-jsi18n": Entry(everyone(OK)),
    # Sign-in, the second factor, account security. Signed-in users are sent home from the
    # sign-in and signup pages; a token is nobody, so it sees them like a visitor.
    "account_signup": Entry(SIGNED_IN_GO_HOME, post=SIGNED_IN_GO_HOME),
    # Signing up with a proxy code (a parent or carer with no record): allauth's signup too.
    "proxies-signup": Entry(SIGNED_IN_GO_HOME, post=SIGNED_IN_GO_HOME),
    "account_login": Entry(SIGNED_IN_GO_HOME, post=SIGNED_IN_GO_HOME),
    "account_logout": Entry(
        who(visitor=LOGIN, password_only=OK, verified=OK),
        post=who(visitor=LOGIN, password_only=SIGNED_OUT, verified=SIGNED_OUT),
    ),
    # Adding an app once signed in (after the password again); a password-only session is sent
    # to its verification step.
    "accounts-2fa-enrol": Entry(gate(OK), post=gate(OK)),
    "accounts-2fa-verify": Entry(
        who(visitor=LOGIN, password_only=OK, verified=to("/")), post=who(visitor=LOGIN, password_only=OK, verified=to("/"))
    ),
    "accounts-security": Entry(gate(OK)),
    "accounts-recovery-regenerate": Entry(POST_ONLY, post=gate(OK)),
    # A factor by its persistent id: only one's own; a non-device label is a 404 too.
    "accounts-factor-rename": Entry(
        POST_ONLY, post=gate(owned(to("/account/security/"))), ids="device", body=lambda w, v: {"name": "Renamed"}
    ),
    "accounts-factor-remove": Entry(POST_ONLY, post=gate(owned(to("/account/security/"))), ids="device"),
    "accounts-passkey-add": Entry(gate(OK)),
    # The person's own time zone (no patient data); an unknown zone is a message, not a write.
    "accounts-time-zone": Entry(POST_ONLY, post=gate(to("/account/security/")), body=lambda w, v: {"time_zone": "Asia/Tokyo"}),
    # Ending one of one's own other sessions (an unfinished sign-in): another person's is a 404.
    "accounts-session-end": Entry(POST_ONLY, post=gate(owned(to("/account/security/"))), ids="user_session"),
    # django-otp-webauthn's ceremonies (POST only; JSON errors for an empty body).
    "accounts-passkey-register-begin": Entry(POST_ONLY, post=gate(OK)),
    "accounts-passkey-register-complete": Entry(POST_ONLY, post=gate(BAD_REQUEST)),
    # Passkey sign-in is a second-factor step: open to a password-only session, never to visitors.
    "accounts-passkey-auth-begin": Entry(
        who(visitor=LOGIN, password_only=NOT_ALLOWED, verified=NOT_ALLOWED), post=who(visitor=LOGIN, password_only=OK, verified=OK)
    ),
    "accounts-passkey-auth-complete": Entry(
        who(visitor=LOGIN, password_only=NOT_ALLOWED, verified=NOT_ALLOWED),
        post=who(visitor=LOGIN, password_only=BAD_REQUEST, verified=BAD_REQUEST),
    ),
    "account_inactive": Entry(everyone(OK)),
    "account_reauthenticate": Entry(gate(OK), post=gate(OK)),
    "account_email": Entry(gate(OK), post=gate(to("/accounts/email/"))),
    "account_email_verification_sent": Entry(everyone(OK)),
    "account_change_password": Entry(gate(OK), post=gate(OK)),
    "account_set_password": Entry(gate(to("/accounts/password/change/")), post=gate(to("/accounts/password/change/"))),
    "account_reset_password": Entry(everyone(OK), post=everyone(OK)),
    "account_reset_password_done": Entry(everyone(OK)),
    "account_reset_password_from_key_done": Entry(everyone(OK)),
    # A reset link with A's user id and a wrong key looks exactly like one for no account.
    "account_reset_password_from_key": Entry(
        lambda p, v: Expect(200, like_missing=v == "a"),
        post=lambda p, v: Expect(200, like_missing=v == "a", unchanged=True),
        ids="reset_key",
    ),
    "account_confirm_email": Entry(everyone(OK), post=everyone(NOT_FOUND), ids="email_key"),
    "account_confirm_login_code": Entry(  # login by code is off: the page only redirects
        who(visitor=LOGIN, password_only=to("/"), verified=to("/")), post=who(visitor=LOGIN, password_only=to("/"), verified=to("/"))
    ),
    "usersessions_list": Entry(gate(OK), post=gate(to("/accounts/sessions/"))),
}


# --- The admin -------------------------------------------------------------------------------
# Only staff open it: of the principals, the administrator. The models registered in it are listed
# explicitly, so registering a new one fails the matrix until it is added here.

ADMIN_MODELS = (
    "auth.group", "sites.site", "account.emailaddress", "usersessions.usersession",
    "accounts.user", "accounts.activationcode", "accounts.authenticatorapp", "accounts.recoverycodeset",
    "accounts.signinevent", "core.serviceaccount",
    "imaging.pacspatientsync", "imaging.pacssyncrun",
    "audit.auditcheckpoint",
    "consent.consentpolicy", "consent.recipient",
    "exports.exportrequest",
    "flags.flag", "flags.incident",
    "sharing.partner",
)


def staff(ok: Rule | Expect, *, others: Expect = ADMIN_LOGIN) -> Rule:
    """The administrator (staff) gets ``ok``; every other verified principal, ``others``."""
    rule = ok if callable(ok) else everyone(ok)
    return lambda principal, variant: rule(principal, variant) if principal == ADMIN else others


# Admin model pages: LoginRequiredMiddleware sends visitors to our login; signed-in non-staff go
# to the admin's login, which refuses them.
ADMIN_PAGE = gate(staff(OK))
STAFF_FORBIDDEN = gate(staff(FORBIDDEN))
# What each ModelAdmin lets the administrator do beyond viewing. Append-only records (checkpoints;
# access events, consent decisions and the flag timeline are not in the admin at all) and rows
# only the system writes are view-only: adding, changing or deleting them is refused (403).
ADMIN_ADDS = {
    "auth.group", "sites.site", "account.emailaddress", "usersessions.usersession", "accounts.user",
    "consent.consentpolicy", "consent.recipient", "sharing.partner",
}
ADMIN_CHANGES = {
    "auth.group", "sites.site", "account.emailaddress", "usersessions.usersession", "accounts.user",
    "accounts.activationcode", "accounts.authenticatorapp", "accounts.recoverycodeset",
    "core.serviceaccount", "consent.recipient", "sharing.partner",
}
ADMIN_DELETES = {
    "auth.group", "sites.site", "account.emailaddress", "usersessions.usersession", "accounts.user",
    "accounts.activationcode", "accounts.authenticatorapp", "accounts.recoverycodeset", "accounts.signinevent",
    "core.serviceaccount", "consent.recipient", "exports.exportrequest",
}
# Change pages whose every editable field may be empty (a code's revocation time, whether the
# recovery codes are on): an empty POST is a valid form, saved.
ADMIN_EMPTY_FORM_SAVES = {"accounts.activationcode", "accounts.recoverycodeset"}
# The admin's own pages (marked public by the admin itself) send visitors to the admin's login.
ADMIN_SITE = who(visitor=ADMIN_LOGIN, password_only=FACTOR, verified=staff(OK))
# The administrator sees accounts in the admin (emails: account data), never a patient's record
# data (names, MRNs, studies, access logs, consent, reports: docs/security.md §19).
STAFF_SEES = {ADMIN: {"a:account", "b:account"}}


def _admin_entries() -> dict[str, Entry]:
    entries = {
        "admin:index": Entry(ADMIN_SITE),
        # The administrator is signed in already: the admin's login sends them to its index (an
        # empty form is shown again); everyone else is refused.
        "admin:login": Entry(
            gate(staff(to("/admin/"), others=FORBIDDEN)), post=gate(staff(Expect(200, unchanged=True), others=FORBIDDEN))
        ),
        # Non-staff are sent to the admin's index (and on to its login), not signed out. The
        # administrator signs out with a POST (Django 5), to our sign-in page.
        "admin:logout": Entry(
            who(visitor=ADMIN_LOGIN, password_only=FACTOR, verified=staff(NOT_ALLOWED, others=to("/admin/"))),
            post=who(
                visitor=ADMIN_LOGIN, password_only=FACTOR,
                verified=staff(SIGNED_OUT, others=Expect(302, "/admin/", unchanged=True)),
            ),
        ),
        "admin:password_change": Entry(ADMIN_SITE, post=ADMIN_SITE),
        "admin:password_change_done": Entry(ADMIN_SITE),
        # Without the query the widget sends, the search is refused.
        "admin:autocomplete": Entry(who(visitor=ADMIN_LOGIN, password_only=FACTOR, verified=staff(FORBIDDEN))),
        "admin:jsi18n": Entry(ADMIN_SITE),
        # A study has no page of its own outside the portal.
        "admin:view_on_site": Entry(who(visitor=ADMIN_LOGIN, password_only=FACTOR, verified=staff(NOT_FOUND)), ids="admin"),
        "admin:app_list": Entry(ADMIN_SITE, ids="admin"),
        "admin/(?P<url>.*)": Entry(who(visitor=ADMIN_LOGIN, password_only=FACTOR, verified=staff(NOT_FOUND)), ids="admin"),
        "admin:auth_user_password_change": Entry(ADMIN_PAGE, post=ADMIN_PAGE, ids="admin"),
    }
    for label in ADMIN_MODELS:
        app_label, model = label.split(".")
        prefix = f"admin:{app_label}_{model}_"
        listing = f"/admin/{app_label}/{model}/"
        # An empty form: errors shown, nothing written; an unconfirmed delete: the confirmation page.
        shown_again = gate(staff(Expect(200, unchanged=True)))
        entries[prefix + "changelist"] = Entry(ADMIN_PAGE, post=ADMIN_PAGE)
        entries[prefix + "add"] = (
            Entry(ADMIN_PAGE, post=shown_again) if label in ADMIN_ADDS else Entry(STAFF_FORBIDDEN, post=STAFF_FORBIDDEN)
        )
        entries[prefix + "history"] = Entry(ADMIN_PAGE, ids="admin")
        entries[prefix + "delete"] = Entry(
            *((ADMIN_PAGE, shown_again) if label in ADMIN_DELETES else (STAFF_FORBIDDEN, STAFF_FORBIDDEN)), ids="admin"
        )
        if label in ADMIN_EMPTY_FORM_SAVES:
            change = gate(staff(to(listing)))
        else:
            change = shown_again if label in ADMIN_CHANGES else STAFF_FORBIDDEN
        entries[prefix + "change"] = Entry(ADMIN_PAGE, post=change, ids="admin")
        # The old-style URL of a row redirects to its change page.
        entries[f"admin/{app_label}/{model}/(?P<object_id>.+)/"] = Entry(gate(staff(to(listing))), ids="admin")
    return {key: dataclasses.replace(entry, sees=STAFF_SEES) for key, entry in entries.items()}


TABLE.update(_admin_entries())


# --- The objects ---------------------------------------------------------------------------


@dataclass
class Owned:
    """One patient's objects, and the strings that only a page showing their data contains."""

    user: User
    record: Patient
    study: Study
    series: Series
    instance: Instance
    event: AccessEvent
    flag: Flag
    export: ExportRequest
    decision: ConsentDecision
    device: AuthenticatorApp
    account_secrets: list[str] = field(default_factory=list)  # who the account is
    record_secrets: list[str] = field(default_factory=list)  # the patient's data
    share: Share | None = None  # a share link of the study, and its token
    share_token: str = ""


MISSING = "987654321"  # a well-formed id no row has
MATRIX_PARTNER = "Matrix Partner Hospital"
OVERFLOW = "9" * 20  # matches <int:...> but no database integer holds it


@dataclass
class World:
    a: Owned
    b: Owned
    officer: User
    tokens: dict[str, str]
    sessions: dict[str, str]
    built_at: float
    admin_rows: dict[type, str] = field(default_factory=dict)  # model -> a row's pk, as first looked up
    # The recipient's other shares of A: "other_share" (of A's second study, never opened by
    # them), "revoked" and "expired" (opened, then ended): name -> (token, study).
    shares: dict[str, tuple[str, Study]] = field(default_factory=dict)

    def owned(self, variant: str) -> Owned:
        return {"a": self.a, "b": self.b}[variant]

    # Each id kind: a variant -> the URL parameters and the query string.
    def ids(self, kind: str, variant: str, route: Route) -> tuple[dict[str, str], dict[str, str]]:
        if kind in ("study", "series", "instance", "frame"):
            if variant in ("a", "b"):
                o = self.owned(variant)
                values = [o.study.pk, o.series.pk, o.instance.pk]
            elif variant == "mixed":  # A's study with B's series (and B's image)
                values = [self.a.study.pk, self.b.series.pk, self.b.instance.pk]
            else:
                values = [{"missing": MISSING, "malformed": OVERFLOW}[variant]] * 3
            names = ["study_id", "series_id", "instance_id"]
            kwargs = {n: str(v) for n, v in zip(names, values, strict=True) if n in dict(route.params)}
            if kind == "frame":
                kwargs["frame"] = "0"
            return kwargs, {}
        if kind == "export":
            return {"export_id": self._pk(variant, lambda o: o.export.pk)}, {}
        if kind == "push":
            return {"push_id": self._pk(variant, lambda o: Push.objects.filter(patient=o.record).order_by("pk").first().pk)}, {}
        if kind == "share_study":
            return {}, {}
        if kind == "share":
            return {"share_id": self._pk(variant, lambda o: o.share.pk)}, {}
        if kind == "grant":
            return {"grant_id": self._pk(variant, lambda o: ProxyGrant.objects.filter(patient=o.record).order_by("pk").first().pk)}, {}
        if kind in ("share_token", "share_series", "share_frame"):
            return self._share_ids(kind, variant, route), {}
        if kind == "flag":
            return {"flag_id": self._pk(variant, lambda o: o.flag.pk)}, {}
        if kind == "notice":
            return {"notice_id": self._pk(variant, lambda o: Notice.objects.filter(patient=o.record).order_by("pk").first().pk)}, {}
        if kind == "receipt":
            value = {"missing": str(uuid.uuid4()), "malformed": "not-a-uuid"}.get(variant)
            return {"receipt_id": value or str(self.owned(variant).decision.receipt_id)}, {}
        if kind == "device":
            value = {"missing": f"accounts.authenticatorapp/{MISSING}", "malformed": "accounts.user/1"}.get(variant)
            return {"device_id": value or self.owned(variant).device.persistent_id}, {}
        if kind == "user_session":  # another session of A's or B's (not the client's own)
            if variant not in ("a", "b"):
                return {"session_id": {"missing": MISSING, "malformed": OVERFLOW}[variant]}, {}
            row, _created = UserSession.objects.get_or_create(
                session_key=f"matrixothersession{variant}", defaults={"user": self.owned(variant).user, "ip": "192.0.2.9"}
            )
            return {"session_id": str(row.pk)}, {}
        if kind == "event_query":
            return {}, {"event": self.value(variant, kind)}
        if kind == "log_filter":
            return {}, {"study": self.value(variant, kind)}
        if kind == "consent_study":
            scope = "astrology" if variant == "unknown" else "research"
            return {"scope": scope}, self.query(variant, kind)
        if kind == "export_study":
            return {}, {}
        if kind == "reset_key":
            uid = {"a": int_to_base36(self.a.user.pk), "missing": int_to_base36(int(MISSING))}.get(variant)
            return {"uidb36": uid or "!!", "key": "set-password" if uid else "bad key"}, {}
        if kind == "email_key":
            return {"key": "Mjk:1tWrongKey:abcdef" if variant == "missing" else "bad key!"}, {}
        if kind == "api_check":
            o = self.a if variant != "b" else self.b
            uid = {"a": self.a.study.study_uid, "b": self.b.study.study_uid, "mixed": self.b.study.study_uid,
                   "missing": "1.2.826.0.1.3680043.987654321"}.get(variant, "")
            query = {"issuer": o.record.issuer, "mrn": o.record.mrn, "scope": "research", "study_uid": uid}
            if variant == "malformed":
                query["scope"] = "astrology"
            return {}, query
        if kind == "api_fhir":
            if variant == "malformed":
                return {}, {"patient": "no-separator"}
            o = self.owned(variant) if variant in ("a", "b") else None
            return {}, {"patient": f"{o.record.issuer}|{o.record.mrn}" if o else f"STEXAMPLE|{MISSING}"}
        if kind in ("api_event", "api_cohort"):
            return {}, {}
        if kind == "admin":
            return self._admin_ids(route), {}
        raise AssertionError(f"unknown id kind {kind}")

    def _share_ids(self, kind: str, variant: str, route: Route) -> dict[str, str]:
        """A share link's token, and for its viewer and frames a study, series and image: the
        share's own (a, b, revoked, expired), another patient's (mixed) or another share's
        (other_share) under A's token, missing or too big (malformed) under A's token."""
        study = self.a.study
        if variant in ("a", "missing", "mixed", "other_share", "malformed"):
            token = self.a.share_token
        elif variant == "b":
            token, study = self.b.share_token, self.b.study
        else:
            token = self.shares[variant][0]
        if kind == "share_token":
            return {"token": {"missing": "n0-such-share-token-" + "x" * 23, "malformed": "%00" + "!" * 300}.get(variant, token)}
        if variant == "mixed":
            study = self.b.study
        elif variant == "other_share":
            study = self.shares["other_share"][1]
        if variant in ("missing", "malformed"):
            values = [{"missing": MISSING, "malformed": OVERFLOW}[variant]] * 3
        else:
            series = study.series.get()
            values = [study.pk, series.pk, series.instances.get().pk]
        kwargs = {"token": token, **{n: str(v) for n, v in zip(["study_id", "series_id", "instance_id"], values, strict=True)}}
        if kind == "share_series":
            del kwargs["instance_id"]
        else:
            kwargs["frame"] = "0"
        return kwargs

    def _pk(self, variant: str, pick: Callable[[Owned], int]) -> str:
        if variant in ("a", "b"):
            return str(pick(self.owned(variant)))
        return {"missing": MISSING, "malformed": OVERFLOW}[variant]

    def value(self, variant: str, kind: str) -> str:
        """An id passed in the query string or a form: the object's, missing, or not a number."""
        pick = {"event_query": lambda o: o.event.pk, "log_filter": lambda o: o.study.pk, "consent_study": lambda o: o.study.pk, "export_study": lambda o: o.study.pk, "share_study": lambda o: o.study.pk}[kind]
        if variant in ("a", "b"):
            return str(pick(self.owned(variant)))
        return {"missing": MISSING, "malformed": "abc"}.get(variant, "")

    def query(self, variant: str, kind: str) -> dict[str, str]:
        return {"study": self.value(variant, kind)} if variant != "unknown" else {}

    def api_event_body(self, variant: str) -> Any:
        if variant == "malformed":
            return "{not json"
        o = self.b if variant == "b" else self.a
        uid = {"a": self.a.study.study_uid, "b": self.b.study.study_uid, "mixed": self.b.study.study_uid}.get(variant, "")
        mrn = MISSING if variant == "missing" else o.record.mrn
        return {"events": [{
            "source_event_id": f"matrix-{variant}", "occurred_at": (timezone.now() - dt.timedelta(hours=1)).isoformat(),
            "patient": {"issuer": o.record.issuer, "mrn": mrn}, "study_uid": uid,
            "actor": {"type": "clinician", "name": "Dr Matrix", "organization": "Matrix Clinic", "role": "Radiologist"},
            "purpose": "treatment", "action": "view", "outcome": "success",
        }]}

    def api_cohort_body(self, variant: str) -> Any:
        if variant == "malformed":
            return {"scope": "research", "study_uids": "not a list"}
        uid = self.owned(variant).study.study_uid if variant in ("a", "b") else "1.2.826.0.1.3680043.987654321"
        return {"scope": "research", "study_uids": [uid]}

    def _admin_ids(self, route: Route) -> dict[str, str]:
        names = [n for n, _ in route.params]
        if names == ["app_label"]:
            return {"app_label": "imaging"}
        if names == ["url"]:
            return {"url": "no-such-page/"}
        if names == ["content_type_id", "object_id"]:
            return {"content_type_id": str(ContentType.objects.get_for_model(Study).pk), "object_id": str(self.a.study.pk)}
        if names == ["id"]:
            return {"id": str(self.a.user.pk)}
        # A row that exists, of the model the page is about.
        model = resolve(route.sample_path).func.model_admin.model
        if model not in self.admin_rows:
            pk = model.objects.order_by("pk").values_list("pk", flat=True).first()
            assert pk is not None, f"the matrix has no {model._meta.label} row for {route.key}: create one in world()"
            self.admin_rows[model] = str(pk)
        return {"object_id": self.admin_rows[model]}


# Which variants each kind of id is tried with ("missing" first: the others compare with it).
VARIANTS = {
    "study": ("missing", "a", "b", "malformed"),
    "series": ("missing", "a", "b", "mixed", "malformed"),
    "instance": ("missing", "a", "b", "mixed", "malformed"),
    "frame": ("missing", "a", "b", "mixed", "malformed"),
    "export": ("missing", "a", "b", "malformed"),
    "flag": ("missing", "a", "b", "malformed"),
    "notice": ("missing", "a", "b", "malformed"),
    "receipt": ("missing", "a", "b", "malformed"),
    "device": ("missing", "a", "b", "malformed"),
    "user_session": ("missing", "a", "b", "malformed"),
    "event_query": ("missing", "a", "b", "malformed"),
    "log_filter": ("missing", "a", "b", "malformed"),
    "consent_study": ("missing", "a", "b", "malformed", "unknown"),
    "export_study": ("missing", "a", "b", "malformed"),
    "push": ("missing", "a", "b", "malformed"),
    "share_study": ("missing", "a", "b", "malformed"),
    "share": ("missing", "a", "b", "malformed"),
    "grant": ("missing", "a", "b", "malformed"),
    "share_token": ("missing", "a", "b", "malformed", "revoked", "expired"),
    "share_series": ("missing", "a", "b", "mixed", "other_share", "malformed", "revoked", "expired"),
    "share_frame": ("missing", "a", "b", "mixed", "other_share", "malformed", "revoked", "expired"),
    "reset_key": ("missing", "a", "malformed"),
    "email_key": ("missing", "malformed"),
    "api_check": ("missing", "a", "b", "mixed", "malformed"),
    "api_cohort": ("missing", "a", "b", "malformed"),
    "api_fhir": ("missing", "a", "b", "malformed"),
    "api_event": ("missing", "a", "b", "mixed", "malformed"),
    "admin": ("existing",),
}
# The URL parameters each kind fills (None: any, the admin's).
KIND_PARAMS = {
    "study": ["study_id"], "series": ["study_id", "series_id"], "instance": ["study_id", "series_id", "instance_id"],
    "frame": ["study_id", "series_id", "instance_id", "frame"], "export": ["export_id"], "push": ["push_id"], "flag": ["flag_id"], "notice": ["notice_id"],
    "receipt": ["receipt_id"], "device": ["device_id"], "user_session": ["session_id"], "consent_study": ["scope"], "reset_key": ["uidb36", "key"],
    "email_key": ["key"], "admin": None, "share": ["share_id"], "grant": ["grant_id"], "share_token": ["token"],
    "share_series": ["token", "study_id", "series_id"], "share_frame": ["token", "study_id", "series_id", "instance_id", "frame"],
}


def _patient(tag: str, root: Path, officer: User, policy) -> Owned:
    user = UserFactory(email=f"matrix-{tag}-{uuid.uuid4().hex[:8]}@example.org")
    record = PatientFactory(user=user, name=f"Zebulon{tag.upper()} Quarrington{tag.upper()}", mrn=f"MRX-{tag.upper()}-{uuid.uuid4().hex[:8]}")
    device = AuthenticatorAppFactory(user=user)
    study = make_study(user, root / tag, slices=1, size=32)
    series = study.series.get()
    instance = series.instances.get()
    organization = f"Vendor{tag.upper()} Analytics"
    event = record_access(
        patient=record, study=study, action="view", purpose="ai_training", actor_type="ai_vendor",
        actor_name=f"Pipeline {tag}", actor_ref=f"pipe-{tag}", organization=organization, source="api",
        occurred_at=timezone.now() - dt.timedelta(days=2),
    )
    description = f"Never had this scan, says {tag.upper()}"
    flag = flag_services.flag_create(actor=actor_of(user), category="not_my_scan", description=description, study_id=study.pk)
    flag_services.flag_claim(actor=actor_of(officer), flag=flag)
    flag_services.flag_message(actor=actor_of(officer), flag=flag, text="Which clinic?", ask_for_info=True)
    export = export_services._create(patient=record, studies=[study], deidentify=False, requested_by_id=user.pk,
                                     passphrase="alpha-bravo-charlie-delta-echo-foxtrot")
    assert export_services.export_package(export_id=export.pk) == "ready"
    export.refresh_from_db()
    # A push to a partner that received others' pushes too (the admin's row may not be deleted).
    partner, _ = Partner.objects.get_or_create(name=MATRIX_PARTNER, defaults={"stow_url": "https://pacs.matrix.example/dicom-web"})
    push = Push.objects.create(patient=record, partner=partner, total=1)
    push.studies.set([study])
    share = share_links.share_create(actor=actor_of(user), study_ids=[study.pk], recipient_name=f"Dr Matrix {tag}",
                                     recipient_organization="Matrix Clinic", recipient_email=f"dr-{tag}@matrix.example",
                                     days=7, allow_download=False)
    decision = _write_decision(patient=record, scope="research", decision="granted", study=None, policy=policy, actor=user,
                               channel="portal", kind="change", recorded_by="patient")
    flag.refresh_from_db()
    return Owned(
        user, record, study, series, instance, event, flag, export, decision, device,
        account_secrets=[user.email],
        record_secrets=[record.name, record.mrn, study.study_uid, study.accession, str(decision.receipt_id), organization, description],
        share=share.share, share_token=share.token,
    )


def _recipient_session(a: Owned, root: Path) -> tuple[str, dict[str, tuple[str, Study]]]:
    """The recipient's browser: open visits of A's share and of two more shares of A's study, one
    then revoked and one then expired; and a share of A's second study they never opened."""
    second = make_study(a.user, root / "a-second", slices=1, size=32)
    made = {name: share_links.share_create(
        actor=actor_of(a.user), study_ids=[study.pk], recipient_name="Dr Matrix", recipient_organization="Matrix Clinic",
        recipient_email="dr@matrix.example", days=7, allow_download=False,
    ) for name, study in (("revoked", a.study), ("expired", a.study), ("other_share", second))}
    store = SessionStore()
    for share, token in ((a.share, a.share_token), (made["revoked"].share, made["revoked"].token),
                         (made["expired"].share, made["expired"].token)):
        secret = uuid.uuid4().hex
        ShareVisit.objects.create(share=share, secret_hash=share_links._hash("visit", secret), otp_hash="-",
                                  otp_sent_at=timezone.now(), verified_at=timezone.now())
        store[share_links.session_key(token)] = secret
    store.create()
    share_links.share_revoke(actor=actor_of(a.user), share_id=made["revoked"].share.pk)
    Share.objects.filter(pk=made["expired"].share.pk).update(expires_at=timezone.now() - dt.timedelta(minutes=1))
    return store.session_key, {name: (m.token, m.share.studies.get()) for name, m in made.items()}


def _proxy_sessions(a: Owned, b: Owned) -> dict[str, str]:
    """A proxy of A for each scope, each in the switcher acting for A; and a proxy of B (whose
    grant is B's object for ``proxies-end``)."""
    sessions = {}
    for principal, scope in PROXIES.items():
        user = UserFactory(email=f"matrix-{principal.replace('_', '-')}@example.org")
        AuthenticatorAppFactory(user=user)
        # A caregiver: A is an adult, so a parent's grant would have ended (the growing-up rules).
        code = proxy_code_issue(patient=a.record, relationship="caregiver", scope=scope)
        grant = proxy_code_redeem(actor=actor_of(user), code=code, birth_date=a.record.birth_date, name=f"Matrix {principal}")
        store = SessionStore(session_key=_session(user, verified=True))
        store[PROXY_SESSION_KEY] = grant.pk
        store.save()
        sessions[principal] = store.session_key
    code = proxy_code_issue(patient=b.record, relationship="caregiver")
    proxy_code_redeem(actor=actor_of(UserFactory()), code=code, birth_date=b.record.birth_date, name="Matrix carer of B")
    return sessions


def _admin_rows(world_a: Owned, officer: User) -> None:
    """A row for every admin model the patients' objects did not already create."""
    Group.objects.create(name="Matrix group")
    activation_code_issue(patient=PatientFactory())
    recovery_codes_generate(actor=actor_of(world_a.user), user=world_a.user)
    SignInEvent.objects.create(user=world_a.user, method=SignInEvent.Method.TOTP)
    PacsPatientSync.objects.create(patient=world_a.record)
    PacsSyncRun.objects.create()
    checkpoint_create()
    Recipient.objects.create(name="Matrix Research Ltd", kind=Recipient.Kind.values[0], scope="research", purpose="Research.",
                             retention="Five years")
    flag_services.incident_confirm(
        actor=actor_of(officer), flag=world_a.flag, subject="Matrix incident", message="A notice.",
        criteria=flag_services.IncidentCriteria(window_start=timezone.now() - dt.timedelta(days=7), window_end=timezone.now(),
                                                organization="Nobody Ltd", study=None),
    )


# One handler for every client: a new one would load the middleware again, and WhiteNoise's scan
# of the static files costs more than a request. CSRF is not what this test is about.
_handler = ClientHandler(enforce_csrf_checks=False)
REQUEST_ID = "authzmatrix0001"  # fixed, so error pages that show it compare equal


def _client(**defaults: str) -> Client:
    client = Client(HTTP_X_REQUEST_ID=REQUEST_ID, **defaults)
    client.handler = _handler
    return client


def _session(user: User, *, verified: bool) -> str:
    client = _client()
    if not verified:
        return login_password_only(client, user).session.session_key
    login_verified(client, user)
    reauthenticate(client)  # the password entered again just now: views that ask for it run
    return client.session.session_key


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, tmp_path_factory):
    root = tmp_path_factory.mktemp("authz")
    options = {"location": str(root / "storage"), "file_permissions_mode": 0o640, "directory_permissions_mode": 0o750}
    storages = {
        **settings.STORAGES,
        "dicom": {"BACKEND": "imaging.storage.AtomicFileSystemStorage", "OPTIONS": options},
        "renders": {"BACKEND": "imaging.storage.AtomicFileSystemStorage", "OPTIONS": options},
    }
    fast_hashing = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # as tests/conftest.py does per test
    with (
        # Every share-link case guesses a code from the same address: no rate limit here
        # (tests/sharing/test_links.py tests it).
        override_settings(STORAGES=storages, EXPORTS_DIR=root / "exports", PASSWORD_HASHERS=fast_hashing,
                          SHARE_CODE_RATE=10**6),
        django_db_blocker.unblock(),
        transaction.atomic(),
    ):
        officer = UserFactory(role=User.Role.PRIVACY_OFFICER)
        AuthenticatorAppFactory(user=officer)
        other_officer = UserFactory(role=User.Role.PRIVACY_OFFICER)
        administrator = UserFactory(role=User.Role.ADMINISTRATOR, is_staff=True, is_superuser=True)
        AuthenticatorAppFactory(user=administrator)
        AuthenticatorAppFactory(user=other_officer)
        policy = consent_policy_publish(version=1, text="Policy one.", effective_from=timezone.now() - dt.timedelta(days=30))
        a = _patient("a", root, officer, policy)
        b = _patient("b", root, other_officer, policy)
        _admin_rows(a, officer)
        tokens = {
            AUDIT_TOKEN: service_account_create(name="matrix-ehr", organization="Matrix EHR", scopes=["audit:write"])[1],
            CONSENT_TOKEN: service_account_create(name="matrix-broker", organization="Matrix Broker", scopes=["consent:read"])[1],
        }
        recipient_session, shares = _recipient_session(a, root)
        proxy_sessions = _proxy_sessions(a, b)
        sessions = {
            RECIPIENT: recipient_session,
            PASSWORD_ONLY: _session(a.user, verified=False),
            A: _session(a.user, verified=True),
            B: _session(b.user, verified=True),
            OFFICER: _session(officer, verified=True),
            ADMIN: _session(administrator, verified=True),
            **proxy_sessions,
        }
        yield World(a, b, officer, tokens, sessions, time.monotonic(), shares=shares)
        transaction.set_rollback(True)


def client_for(world: World, principal: str) -> Client:
    if principal in TOKENS:
        return _client(HTTP_AUTHORIZATION=f"Bearer {world.tokens[principal]}")
    client = _client()
    if principal in world.sessions:
        client.cookies[settings.SESSION_COOKIE_NAME] = world.sessions[principal]
        if principal in VERIFIED and time.monotonic() - world.built_at > settings.ACCOUNT_REAUTHENTICATION_TIMEOUT - 60:
            reauthenticate(client)  # a slow run: keep the password fresh (rolled back with the test)
    return client


# --- The cases -----------------------------------------------------------------------------

ROUTES = all_routes()
# A pattern the resolver never reaches (allauth's signup, under ours with the same name and
# path) is covered by the one that shadows it.
_first: dict[str, Route] = {}
for _route in ROUTES:
    _first.setdefault(_route.key, _route)
UNIQUE_ROUTES = list(_first.values())


def _variants(entry: Entry, principal: str) -> tuple[str, ...]:
    """The ids to try. Where the table says the middleware turns this principal away whatever the
    id (to the login page or the second factor), the id never reaches any code but the URL
    resolver: A's real one stands for them all (trying each would add ~370 cases and ~9 s)."""
    variants = VARIANTS[entry.ids] if entry.ids else ("none",)
    rules = [rule for rule in (entry.get, entry.post) if rule is not None]
    if all(rule(principal, v) in (LOGIN, FACTOR, ADMIN_LOGIN) for rule in rules for v in variants):
        return tuple(v for v in variants if v in ("a", "existing"))[:1] or variants
    return variants


def _cases():
    for route in UNIQUE_ROUTES:
        entry = TABLE.get(route.key)
        if entry is None:
            continue  # test_every_route_has_an_entry names it
        for principal in PRINCIPALS:
            for variant in _variants(entry, principal):
                yield pytest.param(route, principal, variant, id=f"{route.key}-{principal}-{variant}")


def test_every_route_has_an_entry():
    missing = sorted({route.key for route in ROUTES} - set(TABLE))
    assert not missing, f"routes with no entry in the authorization matrix (add one to TABLE): {missing}"


def test_every_entry_names_a_route():
    gone = sorted(set(TABLE) - {route.key for route in ROUTES})
    assert not gone, f"matrix entries for routes that no longer exist (remove them): {gone}"


def test_id_kinds_fit_their_routes():
    for route in UNIQUE_ROUTES:
        entry = TABLE.get(route.key)
        if entry is None:
            continue
        params = [name for name, _ in route.params]
        expected = KIND_PARAMS.get(entry.ids, []) if entry.ids else []
        if expected is None:
            continue
        assert params == expected, f"{route.key} captures {params}, but its entry's ids ({entry.ids}) fill {expected}"


_MASKS = [
    (re.compile(rb'(name="csrfmiddlewaretoken" value=")[^"]+'), rb"\1-"),
    (re.compile(rb'("csrfToken": ")[^"]+'), rb"\1-"),
    (re.compile(rb'(nonce=")[^"]+'), rb"\1-"),
    (re.compile(rb"Select a valid choice\. \S+ is not one"), rb"Select a valid choice. - is not one"),
]


def _body(response: HttpResponse) -> bytes:
    # A streamed body closes itself once read (the test client wraps it as a server would).
    return b"".join(response.streaming_content) if response.streaming else response.content


def _masked(body: bytes) -> bytes:
    for pattern, replacement in _MASKS:
        body = pattern.sub(replacement, body)
    return body


# Rows any request writes: the session (saved on every request), its activity record, and a
# token's last use and its count of requests for the day (core.service_activity).
_EVERY_REQUEST_WRITES = ("django_session", "usersessions_usersession", "accounts_serviceaccount", "core_servicerequestday")


def _writes() -> dict[str, int]:
    """Rows inserted, updated or deleted so far in this transaction, per table (PostgreSQL keeps
    the count): a refused POST must not add to it, not even in a savepoint it rolls back."""
    assert connection.vendor == "postgresql", "the matrix counts writes with PostgreSQL's statistics: run it on PostgreSQL"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_xact_user_tables"
            " WHERE n_tup_ins + n_tup_upd + n_tup_del > 0 AND NOT relname = ANY(%s)",
            [list(_EVERY_REQUEST_WRITES)],
        )
        return dict(cursor.fetchall())


def _request(world: World, route: Route, entry: Entry, principal: str, variant: str, method: str):
    kwargs, query = world.ids(entry.ids, variant, route) if entry.ids else ({}, {})
    path = route.fill(kwargs)
    client = client_for(world, principal)
    if method == "get":
        return path, client.get(path, query)
    url = path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
    body = entry.body(world, variant) if entry.body else {}
    if entry.json:
        data = body if isinstance(body, str) else json.dumps(body)
        return path, client.post(url, data, content_type="application/json")
    return path, client.post(url, body)


def _routable(path: str, route: Route) -> bool:
    try:
        return resolve(path).route == resolve(route.sample_path).route
    except Resolver404:
        return False


@pytest.mark.django_db
@pytest.mark.parametrize(("route", "principal", "variant"), list(_cases()))
def test_matrix(world, route, principal, variant):
    entry = TABLE[route.key]
    for method, rule in (("get", entry.get), ("post", entry.post)):
        if rule is None:
            continue
        case = f"{method.upper()} {route.key} as {principal} with {variant} id"
        path = route.fill(world.ids(entry.ids, variant, route)[0] if entry.ids else {})
        # An id the URL pattern does not match is a 404 for everyone.
        expect = _expect(route, rule, principal, variant) if _routable(path, route) else NOT_FOUND
        before = _writes() if method == "post" and expect.unchanged else None
        path, response = _request(world, route, entry, principal, variant, method)
        assert response.status_code == expect.status, f"{case}: {path} answered {response.status_code}, expected {expect}"
        if expect.to:
            assert response["Location"].startswith(expect.to), f"{case}: redirected to {response['Location']}, expected {expect}"
        body = _body(response)
        _assert_no_leak(world, entry, principal, case, body)
        answer = (response.status_code, response.get("Content-Type"), _masked(body))
        if variant == "missing":
            _MISSING_ANSWERS[route.key, principal, method] = answer
        if expect.like_missing:
            missing = _MISSING_ANSWERS.get((route.key, principal, method)) or _missing_answer(world, route, entry, principal, method)
            assert answer[:2] == missing[:2], f"{case}: answered {answer[:2]}, a missing id gets {missing[:2]}"
            assert answer[2] == missing[2], f"{case}: the body differs from a missing id's"
        if before is not None:
            after = _writes()
            assert after == before, f"{case}: a refused POST wrote to {sorted(t for t in after if after[t] != before.get(t))}"


def _expect(route: Route, rule: Rule, principal: str, variant: str) -> Expect:
    """The table's rule; for a proxy, derived from A's (proxies.middleware has the pages per scope)."""
    if principal not in PROXIES:
        return rule(principal, variant)
    needed = required_capability(route.name if route.name and ":" not in route.name else None)
    if needed is None or (needed and needed not in SCOPE_ALLOWS[PROXIES[principal]]):
        return FORBIDDEN
    if needed == "" and route.key.startswith(("accounts-", "account_")) and variant in ("a", "b"):
        return rule(A, "b")  # their own account: A's objects are another's
    return rule(A, variant)


# What a missing id got, per (route, principal, method): its case runs first.
_MISSING_ANSWERS: dict[tuple[str, str, str], tuple[int, str | None, bytes]] = {}


def _missing_answer(world: World, route: Route, entry: Entry, principal: str, method: str) -> tuple[int, str | None, bytes]:
    """When a case runs alone (-k), ask for the missing id here."""
    _, response = _request(world, route, entry, principal, "missing", method)
    return response.status_code, response.get("Content-Type"), _masked(_body(response))


def _assert_no_leak(world: World, entry: Entry, principal: str, case: str, body: bytes) -> None:
    allowed = {OWNS[principal]} if principal in (A, B) else set()
    allowed |= entry.sees.get(principal, set())
    for tag, owned in (("a", world.a), ("b", world.b)):
        if principal in PROXIES and tag == "a":
            # Acting for A: A's record is what they came for; A's account (email) never.
            leaked = [s for s in owned.account_secrets if s.encode() in body]
            assert not leaked, f"{case}: the response shows patient A's account to a proxy: {leaked}"
            continue
        if tag in allowed:
            continue
        secrets = list(owned.record_secrets)
        # "a:account": the entry shows A's account (its email), not A's record.
        if not (principal == PASSWORD_ONLY and tag == "a") and f"{tag}:account" not in allowed:
            secrets += owned.account_secrets  # a password-only session is A's: its own email is no leak
        leaked = [s for s in secrets if s.encode() in body]
        assert not leaked, f"{case}: the response shows patient {tag.upper()}'s data: {leaked}"


def test_the_admin_lists_exactly_the_reviewed_models():
    registered = {model._meta.label_lower for model in admin.site._registry}
    assert registered == set(ADMIN_MODELS), f"admin models changed: add {registered - set(ADMIN_MODELS)}, drop {set(ADMIN_MODELS) - registered}"

