"""Every page a person can reach passes axe-core (WCAG 2.1 A/AA and best practice) with no
serious or critical violation, at phone (390x844) and desktop (1280x800) widths.

axe-core comes from the npm registry (package-lock.json, installed by ``make node-deps``) and is
loaded into Chromium from node_modules as an init script: nothing is fetched from a CDN, and
the pages keep their real CSP. Each principal (visitor, password-only, new patient, patient,
privacy officer) signs in once; every page is loaded once and checked at both widths.

Coverage is enforced: every URL name in the resolver (except Django's admin) is either visited
below or on the reviewed ``NOT_PAGES`` list with the reason it is not a page, so a new view
without an accessibility check fails ``test_every_url_name_is_checked_or_reviewed``.

With LIGHTBOX_SCREENSHOTS=1 the pages marked ``shot`` are also written to docs/screenshots/.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from allauth.account.forms import default_token_generator
from allauth.account.models import EmailAddress, EmailConfirmationHMAC
from allauth.account.utils import user_pk_to_url_str
from allauth.core.internal.ratelimit import respond_429
from django.conf import settings
from django.contrib.sessions.backends.cached_db import SessionStore
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.test import Client
from django.urls import path, resolve
from django.utils import timezone
from playwright.sync_api import Browser, BrowserContext, Page, expect

from accounts.models import User
from accounts.services import service_account_create
from audit.demo import build_demo_access_log
from audit.models import AccessEvent
from consent.demo import build_demo_consent
from consent.models import ConsentDecision
from core.actor import Actor, Kind
from core.service_activity import Miss, service_request_count, service_request_miss_note
from exports.models import ExportRequest
from flags.demo import build_demo_flag
from flags.models import Flag
from imaging.demo import build_demo_studies
from imaging.models import Instance, Study
from imaging.services.integrity import instances_verify
from imaging.services.viewing import series_open
from portal import urls as portal_urls
from proxies.selectors import SESSION_KEY as PROXY_SESSION_KEY
from proxies.services import proxy_code_issue, proxy_code_redeem
from sharing import links
from sharing.models import Partner, Push, Share, ShareVisit
from tests.conftest import login_password_only, login_verified, reauthenticate
from tests.e2e.conftest import ACTION_TIMEOUT_MS, DESKTOP, MOBILE, ConsoleWatch, Screenshots
from tests.e2e.test_signup_journey import totp_code
from tests.factories import AuthenticatorAppFactory, UserFactory, actor_of
from tests.imaging.conftest import dicom_storage  # noqa: F401 - autouse: DICOM files in this test's tmp dir
from tests.routes import all_routes

AXE_JS = Path(settings.BASE_DIR) / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.1 level A and AA, plus axe's best practices (landmarks, headings, region...).
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
FAILING_IMPACTS = {"serious", "critical"}

# --- Error pages -------------------------------------------------------------------------------
# 403, 429 and 500 cannot be provoked on demand in the real URLconf; this test's URLconf adds one
# route per handler so the browser sees exactly what the portal's own handlers render.


def _raise_403(request):
    raise PermissionDenied


def _raise_400(request):
    raise SuspiciousOperation("a11y check")


def _raise_500(request):
    raise RuntimeError("a11y check: the 500 page")


urlpatterns = [
    *portal_urls.urlpatterns,
    path("__a11y__/400/", _raise_400),
    path("__a11y__/403/", _raise_403),
    path("__a11y__/429/", respond_429),
    path("__a11y__/500/", _raise_500),
]
handler400 = portal_urls.handler400
handler403 = portal_urls.handler403
handler404 = portal_urls.handler404
handler429 = portal_urls.handler429
handler500 = portal_urls.handler500


# --- What is visited -----------------------------------------------------------------------------


@dataclasses.dataclass
class World:
    """Ids of the objects the pages show, filled in by ``build_world``."""

    studies: list[Study]
    viewer_series: list[tuple[int, int]]
    receipt_id: str
    flag_id: int
    resolved_flag_id: int
    event_id: int
    exports: dict[str, int]
    reset_path: str
    confirm_path: str
    instance_file: Path
    # Share links (sharing.links): one the recipient's browser opened with both codes, one whose
    # access code it entered (the emailed code's form), and its session with both.
    share_token: str = ""
    share_pending_token: str = ""
    recipient_session: str = ""
    share_series: tuple[int, int] = (0, 0)


@dataclasses.dataclass(frozen=True)
class Visit:
    """One page state. ``url`` builds the address; ``act`` (optional) then drives the page to the
    state to check (a submitted form, an error); the page must end on ``lands`` (the URL name,
    default ``name``) with HTTP ``status``."""

    name: str
    who: str
    url: Callable[[World], str] | str
    state: str = ""
    act: Callable[[Page, World], None] | None = None
    lands: str | None = None
    status: int = 200
    shot: str = ""

    @property
    def label(self) -> str:
        return f"{self.name}{f' ({self.state})' if self.state else ''} as {self.who}"


def _submit(page: Page, button: str) -> None:
    page.get_by_role("button", name=button).click()
    page.wait_for_load_state()


def _login_errors(page: Page, w: World) -> None:
    page.get_by_label("Email").fill("nobody@example.org")
    page.get_by_label("Password").fill("wrong password")
    _submit(page, "Sign in")
    expect(page.locator("main")).to_contain_text("not correct")


def _signup_errors(page: Page, w: World) -> None:
    # Values the browser accepts and the server refuses: the page comes back with its errors.
    page.get_by_label("Activation code").fill("AAAA-BBBB-CCCC")
    page.get_by_label("Date of birth").fill("1980-01-31")
    page.get_by_label("Email").fill("someone@example.org")
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Password (again)").fill("different")
    _submit(page, "Create account")
    _expect_errors(page)


def _proxy_signup_errors(page: Page, w: World) -> None:
    page.get_by_label("Proxy code").fill("AAAA-BBBB-CCCC")
    page.get_by_label("Their date of birth").fill("2019-05-04")
    page.get_by_label("Email").fill("someone@example.org")
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Password (again)").fill("different")
    _submit(page, "Create account")
    _expect_errors(page)


def _expect_errors(page: Page) -> None:
    expect(page.locator(".error-summary, .field-error, .message-error").first).to_be_visible()


def _wrong_code(page: Page, w: World) -> None:
    page.locator("input[name=code]").fill("000000")
    page.locator("form:has(input[name=code]) button[type=submit]").click()
    page.wait_for_load_state()
    _expect_errors(page)


def _enrol_confirm(page: Page, w: World) -> None:
    # The key being enrolled has no row until a code confirms it: read it off the page, as a
    # person typing it into their app would.
    secret = re.sub(r"\s+", "", page.locator("#totp-secret code").text_content() or "")
    page.locator("input[name=code]").fill(totp_code(secret))
    _submit(page, "Confirm code")
    expect(page.get_by_role("heading", level=1)).to_have_text("Save your recovery codes")


def _regenerate_codes(page: Page, w: World) -> None:
    page.get_by_role("button", name=re.compile("new recovery codes", re.I)).click()
    page.wait_for_load_state()
    expect(page.locator("#recovery-codes li")).to_have_count(settings.RECOVERY_CODE_COUNT)


def _verify_copy(page: Page, w: World) -> None:
    page.locator("input[type=file]").set_input_files([
        {"name": "from-another-clinic.dcm", "mimeType": "application/dicom", "buffer": w.instance_file.read_bytes()},
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not DICOM"},
    ])
    page.locator("main form button[type=submit]").click()
    page.wait_for_load_state()
    expect(page.locator("main")).to_contain_text("notes.txt")


def _export_request(page: Page, w: World) -> None:
    page.get_by_label("All my studies").check()
    page.get_by_label(re.compile("^Original")).check()
    _submit(page, "Prepare my export")
    expect(page.get_by_role("heading", level=1)).to_have_text("Write down your passphrase")


def _export_errors(page: Page, w: World) -> None:
    page.get_by_label("Only the studies I tick below").check()
    _submit(page, "Prepare my export")
    _expect_errors(page)


def _share_make(page: Page, w: World) -> None:
    page.locator("input[name=studies]").first.check()
    page.get_by_label("Doctor's name").fill("Dr Ada Lowe")
    page.get_by_label("Hospital or practice").fill("Northbrook Clinic")
    page.get_by_label("Doctor's email").fill("ada@northbrook.example")
    _submit(page, "Make the link")
    expect(page.get_by_role("heading", level=1)).to_have_text("Your share link")


def _share_wrong_code(page: Page, w: World) -> None:
    page.get_by_label("Access code").fill("AAAAA-AAAAA")
    _submit(page, "Continue")
    _expect_errors(page)


def _submit_empty(page: Page, w: World) -> None:
    page.locator("main form[method=post] button[type=submit]").last.click()
    page.wait_for_load_state()
    _expect_errors(page)


def _csrf_failure(page: Page, w: World) -> None:
    page.context.clear_cookies()
    page.get_by_label("Email").fill("nobody@example.org")
    page.get_by_label("Password").fill("wrong password")
    _submit(page, "Sign in")


NEW_USER_EMAIL = "new-patient@example.org"
ANON, HALF, NEW, PATIENT, OFFICER = "visitor", "password-only", "new patient", "patient", "privacy officer"
RECIPIENT = "share recipient"  # no account: a browser that opened a share link with its codes
PROXY = "proxy"  # their own account, acting for the patient under a "view" grant (proxies/)

VISITS: list[Visit] = [
    # Public pages.
    Visit("account_login", ANON, "/accounts/login/"),
    Visit("account_login", ANON, "/accounts/login/", "wrong password", act=_login_errors),
    Visit("account_signup", ANON, "/accounts/signup/"),
    Visit("account_signup", ANON, "/accounts/signup/", "errors", act=_signup_errors),
    Visit("proxies-signup", ANON, "/proxy/signup/"),
    Visit("proxies-signup", ANON, "/proxy/signup/", "errors", act=_proxy_signup_errors),
    Visit("account_reset_password", ANON, "/accounts/password/reset/"),
    Visit("account_reset_password_done", ANON, "/accounts/password/reset/done/"),
    Visit("account_reset_password_from_key", ANON, lambda w: w.reset_path, "new password form"),
    Visit("account_reset_password_from_key", ANON, "/accounts/password/reset/key/1-bad-token/", "bad link"),
    Visit("account_reset_password_from_key_done", ANON, "/accounts/password/reset/key/done/"),
    Visit("account_confirm_email", ANON, lambda w: w.confirm_path),
    Visit("account_confirm_email", ANON, "/accounts/confirm-email/bad-key/", "bad link"),
    Visit("account_email_verification_sent", ANON, "/accounts/confirm-email/"),
    Visit("account_inactive", ANON, "/accounts/inactive/"),
    Visit("error 404", ANON, "/no-such-page/", lands="", status=404),
    Visit("account_login", ANON, "/accounts/login/", "form without its CSRF token: 403", act=_csrf_failure, status=403),
    # Second-factor steps.
    Visit("accounts-2fa-verify", HALF, "/account/2fa/"),
    Visit("accounts-2fa-verify", HALF, "/account/2fa/", "wrong code", act=_wrong_code),
    Visit("accounts-2fa-enrol", NEW, "/account/2fa/setup/", "wrong code", act=_wrong_code),
    Visit("accounts-2fa-enrol", NEW, "/account/2fa/setup/", "recovery codes", act=_enrol_confirm),
    # A share link's recipient (no account).
    Visit("sharing-open", ANON, "/s/some-token/"),
    Visit("sharing-open", ANON, "/s/some-token/", "wrong code", act=_share_wrong_code, status=400),
    Visit("sharing-open-verify", RECIPIENT, lambda w: f"/s/{w.share_pending_token}/code/"),
    Visit("sharing-open-studies", RECIPIENT, lambda w: f"/s/{w.share_token}/studies/"),
    Visit("sharing-open-viewer", RECIPIENT, lambda w: "/s/{}/studies/{}/series/{}/".format(w.share_token, *w.share_series),
          shot="share-recipient-viewer"),
    # The patient.
    Visit("home", PATIENT, "/"),
    # The demo's CT (several series, a stack to scroll) and ultrasound (one multi-frame image).
    *[Visit("imaging-study", PATIENT, lambda w, i=i: f"/studies/{w.studies[i].pk}/", kind) for i, kind in ((0, "CT"), (3, "US"))],
    *[
        Visit("imaging-viewer", PATIENT, lambda w, i=i: "/studies/{}/series/{}/view/".format(*w.viewer_series[i]), kind)
        for i, kind in ((0, "CT"), (3, "US"))
    ],
    # The demo CT's report: a Structured Report as text and its PDF copy inline.
    Visit("imaging-report", PATIENT, lambda w: f"/studies/{w.studies[0].pk}/report/", "CT", shot="report"),
    Visit("imaging-verify", PATIENT, "/verify/"),
    Visit("imaging-verify", PATIENT, "/verify/", "results", act=_verify_copy),
    Visit("audit-log", PATIENT, "/access-log/"),
    Visit("audit-log", PATIENT, "/access-log/?since=2030-01-01&until=2029-01-01", "filter errors"),
    Visit("audit-log", PATIENT, "/access-log/?show=own", "your own actions, one line per day"),
    Visit("audit-log", PATIENT, "/access-log/?show=all", "everything"),
    Visit("audit-preferences", PATIENT, "/access-log/notifications/"),
    Visit("consent-home", PATIENT, "/consent/"),
    Visit("consent-policy", PATIENT, "/consent/policy/"),
    Visit("consent-history", PATIENT, "/consent/history/"),
    Visit("consent-receipt", PATIENT, lambda w: f"/consent/receipts/{w.receipt_id}/"),
    Visit("consent-partners", PATIENT, "/consent/partners/"),
    Visit("flags-mine", PATIENT, "/flags/", shot="flags-mine"),
    Visit("notices-list", PATIENT, "/notices/", shot="notices"),
    Visit("flags-detail", PATIENT, lambda w: f"/flags/{w.flag_id}/", "needs information"),
    Visit("flags-detail", PATIENT, lambda w: f"/flags/{w.resolved_flag_id}/", "resolved"),
    Visit("flags-new", PATIENT, "/flags/new/", "pick what to report"),
    Visit("flags-new", PATIENT, lambda w: f"/flags/new/?study={w.studies[0].pk}", "a study"),
    Visit("flags-new", PATIENT, lambda w: f"/flags/new/?event={w.event_id}", "an access, errors", act=_submit_empty, status=400),
    Visit("exports-list", PATIENT, "/exports/"),
    Visit("sharing-list", PATIENT, "/sharing/"),
    Visit("proxies-people", PATIENT, "/people/", shot="proxies-people"),
    Visit("proxies-redeem", PATIENT, "/proxy/code/"),
    Visit("proxies-invite", PATIENT, "/people/invite/"),
    Visit("proxies-redeem", PATIENT, "/proxy/code/", "errors", act=lambda page, w: _submit(page, "Use the code"), status=400),
    Visit("accounts-security", PATIENT, "/account/security/"),
    Visit("usersessions_list", PATIENT, "/accounts/sessions/"),
    Visit("account_logout", PATIENT, "/accounts/logout/"),
    Visit("imaging-study", PATIENT, "/studies/999999/", "missing, or another patient's: 404", status=404),
    *[Visit(f"error {code}", PATIENT, f"/__a11y__/{code}/", lands="", status=code) for code in (400, 403, 429, 500)],
    Visit("account_reauthenticate", PATIENT, "/accounts/reauthenticate/"),
    # From here on the patient has re-entered the password (see ``REAUTHENTICATE_BEFORE``).
    Visit("consent-change", PATIENT, "/consent/change/ai_training/"),
    Visit("proxies-invite", PATIENT, "/people/invite/", "errors", act=lambda page, w: _submit(page, "Send the invitation"),
          status=400),
    Visit("consent-change", PATIENT, "/consent/change/research/?decision=granted", "confirm yes"),
    Visit("sharing-send", PATIENT, lambda w: f"/sharing/send/?study={w.studies[0].pk}"),
    Visit("sharing-send", PATIENT, "/sharing/send/", "errors", act=lambda page, w: _submit(page, "Send the scans"), status=400),
    Visit("sharing-new", PATIENT, "/sharing/new/"),
    Visit("sharing-new", PATIENT, "/sharing/new/", "errors", act=lambda page, w: _submit(page, "Make the link"), status=400),
    Visit("sharing-new", PATIENT, "/sharing/new/", "link, code and QR shown once", act=_share_make, shot="share-created"),
    Visit("exports-new", PATIENT, "/exports/new/"),
    Visit("exports-new", PATIENT, "/exports/new/", "errors", act=_export_errors, status=400),
    Visit("exports-new", PATIENT, "/exports/new/", "passphrase shown once", act=_export_request),
    *[
        Visit("exports-detail", PATIENT, lambda w, s=s: f"/exports/{w.exports[s]}/", s, shot="export-progress" if s == "packaging" else "")
        for s in ("packaging", "ready", "failed", "expired")
    ],
    Visit("accounts-2fa-enrol", PATIENT, "/account/2fa/setup/", "adding a second app"),
    Visit("accounts-passkey-add", PATIENT, "/account/security/passkeys/add/"),
    Visit("account_email", PATIENT, "/accounts/email/"),
    Visit("account_change_password", PATIENT, "/accounts/password/change/"),
    Visit("accounts-recovery-regenerate", PATIENT, "/account/security/", "new codes", act=_regenerate_codes),
    # A proxy acting for the patient: the switcher, and a page outside a "view" grant (403, why).
    Visit("home", PROXY, "/", "acting for the patient"),
    Visit("flags-mine", PROXY, "/flags/", "outside the grant's scope", status=403),
    # The privacy office.
    Visit("flags-queue", OFFICER, "/privacy-office/", shot="flags-queue"),
    Visit("flags-queue", OFFICER, "/privacy-office/?status=resolved&category=other", "nothing found"),
    Visit("flags-dashboard", OFFICER, "/privacy-office/dashboard/"),
    Visit("flags-service-activity", OFFICER, "/privacy-office/service-accounts/", shot="service-activity"),
    Visit("flags-officer-detail", OFFICER, lambda w: f"/privacy-office/flags/{w.flag_id}/"),
    Visit("accounts-security", OFFICER, "/account/security/"),
    Visit("account_reauthenticate", OFFICER, "/accounts/reauthenticate/"),
    Visit("consent-office-record", OFFICER, "/consent/office/record/"),
]
# Visits that need a password re-entered in the last 5 minutes: the principal reauthenticates
# (through its Django test client, on the same session) just before the first of them.
REAUTHENTICATE_BEFORE = {PATIENT: "consent-change", OFFICER: "consent-office-record"}

# Reviewed: URL names that are not pages a person reads, with the reason.
NOT_PAGES = {
    "imaging-thumbnail": "PNG image",
    "imaging-viewer-data": "JSON, fetched by the viewer's series strip (the viewer page is checked)",
    "imaging-document": "PDF document, shown inside the report page (imaging-report is checked)",
    "imaging-frame": "PNG image, fetched by the viewer",
    "imaging-download": "file download (DICOM)",
    "audit-log-csv": "file download (CSV)",
    "audit-log-receipt": "file download (JSON receipt)",
    "consent-receipt-json": "file download (signed JSON)",
    "exports-status": "JSON polled by exports.js",
    "sharing-push-status": "JSON polled by sharing.js",
    "sharing-revoke": "POST-only; redirects to the sharing page (its buttons are checked there)",
    "sharing-push-stop": "POST-only; redirects to the sharing page (its Stop sending button is checked there)",
    "proxies-switch": "POST-only; redirects home (the switcher is checked on the proxy's home page)",
    "proxies-end": "POST-only; redirects to the people page (its buttons are checked there)",
    "proxies-agree": "POST-only; redirects to the people page (its buttons are checked there)",
    "sharing-open-frame": "PNG image, fetched by the share link's viewer",
    "sharing-open-download": "POST-only; file download (the encrypted ZIP)",
    "exports-download": "POST-only; file download",
    "exports-cancel": "POST-only; redirects to the export page",
    "exports-revoke": "POST-only; redirects to the export page",
    "exports-seen": "POST-only; redirects to the downloads page",
    "flags-reply": "POST-only; redirects to the report page",
    "flags-notices-read": "POST-only; redirects back",
    "notices-read": "POST-only; redirects to the notice's page or the list",
    "notices-read-all": "POST-only; redirects to the list",
    "portal-start": "redirects patients and officers; the administrators' page is checked with axe in tests/e2e/test_roles.py",
    "flags-claim": "POST-only; redirects to the flag page",
    "flags-assign": "POST-only; redirects to the flag page",
    "flags-note": "POST-only; redirects to the flag page",
    "flags-message": "POST-only; redirects to the flag page",
    "flags-status": "POST-only; redirects to the flag page",
    "flags-integrity-recheck": "POST-only; redirects to the flag page",
    "flags-incident": "POST-only; redirects to the flag page",
    "accounts-factor-rename": "POST-only; redirects to the security page",
    "accounts-factor-remove": "POST-only; redirects to the security page",
    "accounts-time-zone": "POST-only; redirects to the security page (its form is checked there)",
    "accounts-session-end": "POST-only; redirects to the security page (its buttons are checked there)",
    "accounts-passkey-register-begin": "JSON for the passkey script",
    "accounts-passkey-register-complete": "JSON for the passkey script",
    "accounts-passkey-auth-begin": "JSON for the passkey script",
    "accounts-passkey-auth-complete": "JSON for the passkey script",
    "account_confirm_login_code": "login by code is off: only redirects to the login page",
    "account_set_password": "every account has a password: only redirects to the password change page",
    "audit-api-events": "JSON API (service token)",
    "consent-api-check": "JSON API (service token)",
    "consent-api-cohort": "JSON API (service token)",
    "consent-api-fhir": "JSON API (service token)",
    "portal-openapi": "JSON (OpenAPI document)",
    "portal-healthz": "JSON health check",
    "portal-signing-key": "PEM file",
    "portal-webauthn-jsi18n": "JavaScript catalogue",
}


def _url_names() -> set[str]:
    # Django's admin (staff only) renders Django's own templates, not ours.
    return {route.name for route in all_routes() if route.name and not route.name.startswith("admin:")}


def test_every_url_name_is_checked_or_reviewed():
    """A new URL name fails here until it gets a visit above or a reviewed reason."""
    names = _url_names()
    visited = {v.name for v in VISITS if v.lands != ""}  # lands="" marks an error page outside the URLconf
    missing = names - visited - set(NOT_PAGES)
    assert not missing, f"URL names without an accessibility visit or a reviewed reason: {sorted(missing)}"
    stale = (visited | set(NOT_PAGES)) - names
    assert not stale, f"entries for URL names that no longer exist: {sorted(stale)}"
    assert not visited & set(NOT_PAGES), "a URL name is both visited and skipped"


# --- The data the pages show ---------------------------------------------------------------------


def build_world(patient: User, officer: User) -> World:
    record = patient.patient
    record.name = "Alex Morgan"
    record.save(update_fields=["name"])
    studies = build_demo_studies(record)
    instances_verify()
    build_demo_access_log(record)
    build_demo_consent(record)
    flag = build_demo_flag(record, officer)
    resolved = Flag.objects.create(
        patient=record, study=studies[0], raised_by=patient, category=Flag.Category.WRONG_DETAILS,
        description="The referring doctor's name is misspelt.", status=Flag.Status.RESOLVED,
        resolution="We corrected the name in the hospital's records.", due_at=timezone.now() + dt.timedelta(days=20),
    )
    event = AccessEvent.objects.filter(patient=record, source="api").order_by("-occurred_at").first()
    # The office's view of connected systems, with a token that asked about patients it found none of.
    prober, _token = service_account_create(name="prober", organization="Curious Ltd", scopes=["consent:read"])
    service_request_count(account=prober)
    service_request_miss_note(actor=Actor.for_service(prober), endpoint="consent-check",
                              misses=[Miss(patient=("LOCAL", "NO-SUCH-1")), Miss(patient=("LOCAL", "NO-SUCH-2"))])
    viewer_series = []
    for study in studies:
        series = study.series.order_by("number").first()
        viewer_series.append((study.pk, series.pk))
    now = timezone.now()
    exports = {}
    for status, extra in {
        "packaging": {"progress": 40, "started_at": now},
        "ready": {"progress": 100, "size": 48_000_000, "file_count": 312, "sha256": "ab" * 32,
                  "finished_at": now, "expires_at": now + dt.timedelta(days=7), "downloads": 1},
        "failed": {"error": "A file could not be read. The privacy office has been told."},
        "expired": {"progress": 100, "finished_at": now - dt.timedelta(days=8), "expires_at": now - dt.timedelta(days=1)},
    }.items():
        export = ExportRequest.objects.create(patient=record, requested_by=patient, status=status, **extra)
        export.studies.set(studies)
        exports[status] = export.pk
    # Pushes to another hospital: running (progress bar), sent, failed with its reason.
    partner = Partner.objects.create(name="Northbrook Royal Infirmary", stow_url="https://pacs.northbrook.example/dicom-web")
    for status, extra in {
        "sending": {"total": 120, "sent": 48, "started_at": now},
        "sent": {"total": 40, "sent": 40, "finished_at": now},
        "failed": {"total": 40, "error": "Northbrook Royal Infirmary could not be reached. Lightbox tried 9 times and has stopped."},
    }.items():
        Push.objects.create(patient=record, requested_by=patient, partner=partner, status=status, **extra).studies.set(studies[:1])
    # Password reset and email confirmation links, as the emails would carry them.
    reset_user = UserFactory()
    reset_path = f"/accounts/password/reset/key/{user_pk_to_url_str(reset_user)}-{default_token_generator.make_token(reset_user)}/"
    unconfirmed = UserFactory(verified_email=False)
    confirm_path = f"/accounts/confirm-email/{EmailConfirmationHMAC(EmailAddress.objects.get(user=unconfirmed)).key}/"
    instance = Instance.objects.filter(series__study=studies[0]).first()
    # Share links on the sharing page (one opened and viewed, one revoked, one expired), and the
    # recipient's browser session.
    made = {name: links.share_create(
        actor=actor_of(patient), study_ids=[studies[0].pk], recipient_name=f"Dr {name.title()} Lowe",
        recipient_organization="Northbrook Clinic", recipient_email="ada@northbrook.example", days=7, allow_download=False,
    ) for name in ("open", "pending", "revoked", "expired")}
    links.share_revoke(actor=actor_of(patient), share_id=made["revoked"].share.pk)
    Share.objects.filter(pk=made["expired"].share.pk).update(expires_at=timezone.now() - dt.timedelta(days=1))
    store = SessionStore()
    for name, verified in (("open", True), ("pending", False)):
        secret = f"a11y-{name}-visit-secret"
        ShareVisit.objects.create(share=made[name].share, secret_hash=links._hash("visit", secret), otp_hash="-",
                                  otp_sent_at=timezone.now(), verified_at=timezone.now() if verified else None)
        store[links.session_key(made[name].token)] = secret
    store.create()
    recipient = Actor(kind=Kind.SHARE_RECIPIENT, name="Dr Open Lowe", organization="Northbrook Clinic",
                      patient_ids=frozenset({record.pk}), share_id=made["open"].share.pk, study_ids=frozenset({studies[0].pk}))
    series_open(actor=recipient, study_id=viewer_series[0][0], series_id=viewer_series[0][1])
    return World(
        studies=studies, viewer_series=viewer_series,
        receipt_id=str(ConsentDecision.objects.filter(patient=record).latest("decided_at").receipt_id),
        flag_id=flag.pk, resolved_flag_id=resolved.pk, event_id=event.pk, exports=exports,
        reset_path=reset_path, confirm_path=confirm_path,
        instance_file=Path(settings.STORAGES["dicom"]["OPTIONS"]["location"]) / instance.storage_path,
        share_token=made["open"].token, share_pending_token=made["pending"].token, recipient_session=store.session_key,
        share_series=viewer_series[0],
    )


def _proxy_client(patient: User) -> Client:
    """A carer with their own account acting for ``patient`` under a "view" grant; the patient's
    people page then lists them (with its buttons)."""
    carer = UserFactory()
    AuthenticatorAppFactory(user=carer)
    code = proxy_code_issue(patient=patient.patient, relationship="caregiver", scope="view")
    grant = proxy_code_redeem(actor=actor_of(carer), code=code, birth_date=patient.patient.birth_date, name="Robin Carer")
    client = login_verified(Client(), carer)
    session = client.session
    session[PROXY_SESSION_KEY] = grant.pk
    session.save()
    return client


# --- Running axe ---------------------------------------------------------------------------------

# Collapsed <details> would hide their content (filters, tables, help) from axe: open them first.
AXE_RUN = """async (tags) => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const result = await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => ({target: n.target.join(' '), summary: n.failureSummary})),
  }));
}"""


def axe_violations(page: Page) -> list[dict]:
    return page.evaluate(AXE_RUN, AXE_TAGS)


def assert_axe_catches_a_known_violation(page: Page) -> None:
    """The check can fail: an unlabelled text box added to the sign-in page is reported."""
    page.goto("/accounts/login/")
    page.evaluate("document.querySelector('main form').insertAdjacentHTML('beforeend', '<input name=canary>')")
    found = {(v["id"], v["impact"]) for v in axe_violations(page)}
    assert ("label", "critical") in found, f"axe did not report the unlabelled text box: {found}"


def _open_context(browser: Browser, live_url: str, client: Client | None) -> BrowserContext:
    context = browser.new_context(viewport=DESKTOP, locale="en-GB", base_url=live_url)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    # Served from node_modules into every page before its own scripts; an init script is not
    # subject to the page's CSP, so the pages keep their real policy.
    context.add_init_script(path=str(AXE_JS))
    if client is not None:
        cookie = client.cookies[settings.SESSION_COOKIE_NAME]
        context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_url}])
    return context


def _check(page: Page, visit: Visit, world: World, shots: Screenshots, console: ConsoleWatch, problems: list[str]) -> None:
    url = visit.url(world) if callable(visit.url) else visit.url
    seen = len(console.csp_violations), len(console.page_errors)
    page.goto(url)
    if visit.act is not None:
        visit.act(page, world)
    where = f"{visit.label} at {urlsplit(page.url).path}"
    status = page.evaluate("performance.getEntriesByType('navigation')[0].responseStatus")
    expected = visit.name if visit.lands is None else visit.lands
    landed = resolve(urlsplit(page.url).path).url_name if expected else ""
    if status != visit.status or landed != expected:
        # Checking some other page (a redirect to sign-in, say) would prove nothing about this one.
        problems.append(f"{where}: HTTP {status} on {landed or 'no URL name'}, expected {visit.status} on {expected or 'no URL name'}")
        return
    if visit.shot:  # before axe, which opens every <details>
        shots(page, visit.shot)
    for viewport in (DESKTOP, MOBILE):
        page.set_viewport_size(viewport)
        for v in axe_violations(page):
            if v["impact"] in FAILING_IMPACTS:
                nodes = "\n".join(f"      {n['target']}: {n['summary']}".replace("\n", " ") for n in v["nodes"][:8])
                problems.append(f"{where} [{viewport['width']}px] {v['impact']} {v['id']}: {v['help']}\n{nodes}")
    page.set_viewport_size(DESKTOP)
    for message in console.csp_violations[seen[0]:] + console.page_errors[seen[1]:]:
        problems.append(f"{where}: {message}")


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_every_page_has_no_serious_accessibility_violation(browser: Browser, live_server, site, settings, patient, officer, console, screenshot):
    assert AXE_JS.exists(), f"{AXE_JS} is missing: run `make node-deps` (npm ci)"
    settings.ROOT_URLCONF = __name__
    world = build_world(patient, officer)
    half = UserFactory()
    AuthenticatorAppFactory(user=half)
    new = UserFactory(email=NEW_USER_EMAIL)
    clients = {
        ANON: None,
        HALF: login_password_only(Client(), half),
        NEW: login_password_only(Client(), new),
        PATIENT: login_verified(Client(), patient),
        OFFICER: login_verified(Client(), officer),
        RECIPIENT: Client(),
        PROXY: _proxy_client(patient),
    }
    clients[RECIPIENT].cookies[settings.SESSION_COOKIE_NAME] = world.recipient_session
    problems: list[str] = []
    for who, client in clients.items():
        context = _open_context(browser, live_server.url, client)
        page = context.new_page()
        page.on("console", console.on_console)
        page.on("pageerror", console.on_page_error)
        if client is None:
            assert_axe_catches_a_known_violation(page)
        for visit in (v for v in VISITS if v.who == who):
            if REAUTHENTICATE_BEFORE.get(who) == visit.name:
                reauthenticate(client)
            _check(page, visit, world, screenshot, console, problems)
        context.close()
    assert not problems, f"{len(problems)} accessibility problems (serious or critical):\n" + "\n".join(problems)
