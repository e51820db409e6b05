"""docs/security.md §15 on every page: security headers, no-store and cookies, walked over the URLconf.

The walk takes every URL pattern the resolver knows (the same walker as the second-factor gate
test, so a new view is covered the day it is added) and requests it as an anonymous visitor, a
verified patient, a verified privacy officer and a verified administrator (the admin's pages).
Captured ids are filled with the patient's own real objects (a study imported from a DICOM file,
its series and instance, an export, a flag the officer holds, a consent receipt, the patient's
authenticator), so the pages that show patient data answer 200 and are checked, not just their
404s. Every response must carry a strict CSP (no ``unsafe-*``, no wildcard, ``frame-ancestors
'none'``, ``object-src 'none'``, ``base-uri``), ``nosniff``, a Referrer-Policy, a
Cross-Origin-Opener-Policy and ``X-Frame-Options: DENY``; every response to a signed-in user is
``no-store``.

Production settings are checked in a separate process (``LIGHTBOX_ENV=production``): a patient
signs in through the real password and second-factor forms over HTTPS, every cookie the portal
sets on the way is ``__Host-``-prefixed (session, CSRF), Secure, HttpOnly and SameSite, every
page then carries HSTS, and plain HTTP is redirected to HTTPS.
"""

from __future__ import annotations

import json
import subprocess
import sys
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from accounts.models import User
from tests.conftest import login_verified
from tests.factories import AuthenticatorAppFactory, UserFactory
from tests.imaging.conftest import dicom_storage  # noqa: F401 - autouse: this module's own storage root
from tests.portal.test_settings import ROOT, _manage, production_env  # noqa: F401 - a fixture
from tests.routes import Route, all_routes

HSTS = "max-age=63072000; includeSubDomains; preload"
# Directives a CSP must pin down itself (falling back to default-src is not enough for these:
# frame-ancestors, base-uri and form-action never fall back).
REQUIRED_DIRECTIVES = {"default-src", "script-src", "style-src", "object-src", "base-uri", "form-action", "frame-ancestors"}
# Sources that would let injected markup run code or load it from elsewhere.
FORBIDDEN_SOURCES = ("'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "'wasm-unsafe-eval'", "*", "http:", "https:")


def csp_problems(policy: str) -> list[str]:
    """What is wrong with a Content-Security-Policy value (empty when it is strict)."""
    directives: dict[str, list[str]] = {}
    for part in policy.split(";"):
        tokens = part.split()
        if tokens:
            directives[tokens[0].lower()] = tokens[1:]
    problems = [f"missing {name}" for name in sorted(REQUIRED_DIRECTIVES - directives.keys())]
    for name, sources in directives.items():
        bad = [s for s in sources if s.lower() in FORBIDDEN_SOURCES or s.startswith("'unsafe-")]
        if bad:
            problems.append(f"{name} allows {' '.join(bad)}")
    for name in ("script-src", "object-src", "base-uri", "default-src"):
        if "data:" in directives.get(name, []) or "blob:" in directives.get(name, []):
            problems.append(f"{name} allows data:/blob: URLs")
    if directives.get("frame-ancestors") != ["'none'"]:
        problems.append(f"frame-ancestors is {directives.get('frame-ancestors')}, not 'none'")
    if directives.get("object-src") != ["'none'"]:
        problems.append(f"object-src is {directives.get('object-src')}, not 'none'")
    if directives.get("base-uri") not in (["'none'"], ["'self'"]):
        problems.append(f"base-uri is {directives.get('base-uri')}")
    return problems


def header_problems(headers: dict[str, str], *, signed_in: bool) -> list[str]:
    """docs/security.md §15's headers on one response; ``headers`` has lower-case names."""
    problems = []
    policy = headers.get("content-security-policy")
    if policy is None:
        problems.append("no Content-Security-Policy")
    else:
        problems += [f"CSP: {p}" for p in csp_problems(policy)]
    expected = {
        "x-content-type-options": "nosniff",
        "referrer-policy": "same-origin",
        "cross-origin-opener-policy": "same-origin",
        "x-frame-options": "DENY",
    }
    for name, value in expected.items():
        if headers.get(name) != value:
            problems.append(f"{name} is {headers.get(name)!r}, not {value!r}")
    if signed_in and "no-store" not in headers.get("cache-control", ""):
        problems.append(f"signed in but Cache-Control is {headers.get('cache-control')!r}")
    return problems


def _headers(response) -> dict[str, str]:
    return {name.lower(): value for name, value in response.items()}


def test_the_policy_checker_catches_weak_policies():
    """The checker must fail the policies it exists to catch (else the walk proves nothing)."""
    strict = settings_policy()
    assert csp_problems(strict) == []
    assert csp_problems(strict.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'"))
    assert csp_problems(strict.replace("frame-ancestors 'none'", "frame-ancestors 'self'"))
    assert csp_problems(strict.replace("object-src 'none'", "object-src *"))
    assert csp_problems("; ".join(p for p in strict.split("; ") if not p.startswith("base-uri")))
    assert header_problems({"content-security-policy": strict}, signed_in=True)


def settings_policy() -> str:
    from csp.utils import build_policy

    return build_policy(config=settings.CONTENT_SECURITY_POLICY["DIRECTIVES"])


# --- The walk ------------------------------------------------------------------------------


def build_world(patient: User, officer: User, folder: Path) -> dict[str, Any]:
    """The patient's own objects, one of each kind a URL can name; returns URL kwargs."""
    from consent.demo import build_demo_consent
    from consent.models import ConsentDecision, Scope
    from core.actor import Actor
    from exports.demo import create_demo_export
    from flags.demo import build_demo_flag
    from imaging.dicom import synth
    from imaging.models import Instance
    from imaging.services.ingest import IMPORTER_NAME, dicom_import

    record = patient.patient
    path = synth.write_instance(folder / "one.dcm", patient_id=record.mrn, issuer=record.issuer)
    summary = dicom_import(actor=Actor.system(IMPORTER_NAME), paths=[path])
    assert summary.imported == 1, summary.as_dict()
    instance = Instance.objects.select_related("series__study").get(series__study__study_uid=summary.studies[0])
    build_demo_consent(record)
    flag = build_demo_flag(record, officer)  # flags the study, claimed by the officer
    export, _ = create_demo_export(patient=record)
    return {
        "study_id": instance.series.study.pk,
        "series_id": instance.series.pk,
        "instance_id": instance.pk,
        "frame": 0,
        "export_id": export.pk,
        "flag_id": flag.pk,
        "receipt_id": ConsentDecision.objects.filter(patient=record).latest("pk").receipt_id,
        "scope": Scope.values[0],
        "device_id": patient.authenticatorapp_set.get().persistent_id,
    }


def world_path(route: Route, world: dict[str, Any] | None) -> str:
    """The route's path with every captured id filled from the world, else its sample path."""
    names = {name for name, _ in route.params}
    if world and names and names <= world.keys():
        return route.fill({name: str(world[name]) for name in names})
    return route.sample_path


def walk(client: Client, routes: list[Route], *, signed_in: bool, world: dict[str, Any] | None = None) -> tuple[set[str], list[str]]:
    """GET every route; returns the keys of the routes that answered 200, and the problems found."""
    ok, problems = set(), []
    for route in routes:
        url = world_path(route, world)
        response = client.get(url)
        assert response.status_code != 500, f"GET {url} answered 500"
        if response.status_code == 200:
            ok.add(route.key)
        problems += [f"GET {url} ({route.key}) {response.status_code}: {p}" for p in header_problems(_headers(response), signed_in=signed_in)]
    return ok, problems


def _is_admin(route: Route) -> bool:
    return (route.name or "").startswith("admin:") or route.regex.startswith("admin/")


PATIENT_PAGES = {
    "home", "imaging-study", "imaging-viewer", "imaging-viewer-data", "imaging-report", "imaging-thumbnail", "imaging-frame", "audit-log", "consent-home",
    "consent-history", "consent-receipt", "consent-receipt-json", "exports-list", "exports-detail", "exports-status",
    "flags-mine", "flags-detail", "accounts-security", "usersessions_list",
}
ROUTES = all_routes()
SITE_ROUTES = [r for r in ROUTES if not _is_admin(r)]
ADMIN_ROUTES = [r for r in ROUTES if _is_admin(r)]


@pytest.mark.django_db
def test_every_page_sends_the_headers_to_an_anonymous_visitor(client):
    ok, problems = walk(client, ROUTES, signed_in=False)
    assert not problems, "\n".join(problems)
    assert {"account_login", "account_signup", "account_reset_password", "portal-healthz"} <= ok, ok


@pytest.mark.django_db
def test_every_page_sends_the_headers_and_no_store_to_a_patient_and_an_officer(patient, officer, tmp_path, settings):
    settings.EXPORTS_DIR = tmp_path / "exports"
    world = build_world(patient, officer, tmp_path)
    ok, problems = walk(login_verified(Client(), patient), SITE_ROUTES, signed_in=True, world=world)
    # The patient-data pages really answered (with the patient's own objects), not only their 404s.
    assert PATIENT_PAGES <= ok, PATIENT_PAGES - ok
    officer_ok, officer_problems = walk(login_verified(Client(), officer), SITE_ROUTES, signed_in=True, world=world)
    assert {"flags-queue", "flags-dashboard", "flags-officer-detail"} <= officer_ok, officer_ok
    problems += officer_problems
    assert not problems, "\n".join(problems)


@pytest.mark.django_db
def test_every_admin_page_sends_the_headers_and_no_store():
    admin = UserFactory(is_staff=True, is_superuser=True)
    AuthenticatorAppFactory(user=admin)
    ok, problems = walk(login_verified(Client(), admin), ADMIN_ROUTES, signed_in=True)
    assert not problems, "\n".join(problems)
    assert len(ok) >= 20, ok  # the index, changelists and add forms rendered


# --- Production settings ------------------------------------------------------------------

# Runs inside ``LIGHTBOX_ENV=production``: a patient signs in over HTTPS through the real forms,
# then every non-admin route is requested. Prints one JSON document for the test to judge.
PRODUCTION_WALK = """
import json, os, sys
import django
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
from tests.factories import PASSWORD, AuthenticatorAppFactory, PatientFactory, UserFactory, totp_code
from tests.portal.test_headers import SITE_ROUTES

HOST = "lightbox.example.org"
user = UserFactory()
PatientFactory(user=user)
device = AuthenticatorAppFactory(user=user)
client = Client(HTTP_HOST=HOST)
out = {"cookies": [], "pages": []}

def keep(response):
    out["cookies"] += [morsel.OutputString() for morsel in response.cookies.values()]
    return response

keep(client.get("/accounts/login/", secure=True))
login = keep(client.post("/accounts/login/", {"login": user.email, "password": PASSWORD}, secure=True))
verify = keep(client.post("/account/2fa/", {"code": totp_code(device)}, secure=True))
out["login"] = [login.status_code, login.get("Location"), verify.status_code, verify.get("Location")]
for route in SITE_ROUTES:
    response = keep(client.get(route.sample_path, secure=True))
    out["pages"].append([route.sample_path, response.status_code, {k.lower(): v for k, v in response.items()}])
plain = Client(HTTP_HOST=HOST).get("/accounts/login/")
out["plain_http"] = [plain.status_code, plain.get("Location")]
print(json.dumps(out))
"""


def test_production_pages_send_hsts_and_only_secure_host_cookies(request):
    env = request.getfixturevalue("production_env")  # from test_settings: keys, sqlite, hosts
    for command in (("migrate", "-v0"), ("collectstatic", "--noinput", "-v0")):
        result = _manage(env, *command)
        assert result.returncode == 0, result.stderr
    result = subprocess.run(
        [sys.executable, "-c", PRODUCTION_WALK], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**env, "DJANGO_SETTINGS_MODULE": "portal.settings"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])

    # Signed in through both steps (a 302 onwards each time, not a form re-rendered with errors).
    assert out["login"][0] == 302 and out["login"][2] == 302, out["login"]
    assert not out["login"][3].startswith(("/account/2fa/", "/accounts/login/")), out["login"]
    assert out["plain_http"] == [301, "https://lightbox.example.org/accounts/login/"]

    names = set()
    for line in out["cookies"]:
        cookie = SimpleCookie(line)
        (name, morsel), = cookie.items()
        names.add(name)
        flags = line.lower()
        assert "secure" in flags and "httponly" in flags, line
        assert morsel["samesite"] in ("Lax", "Strict"), line
        if name.startswith("__Host-"):
            assert morsel["path"] == "/" and not morsel["domain"], line
    # The session (rotated at each step) and the CSRF token are host-only cookies.
    assert {"__Host-lightbox-session", "__Host-lightbox-csrf"} <= names, names

    ok, problems = 0, []
    for path, status, headers in out["pages"]:
        assert status != 500, f"GET {path} answered 500"
        ok += status == 200
        if headers.get("strict-transport-security") != HSTS:
            problems.append(f"GET {path} {status}: HSTS is {headers.get('strict-transport-security')!r}")
        problems += [f"GET {path} {status}: {p}" for p in header_problems(headers, signed_in=True)]
    assert not problems, "\n".join(problems)
    assert ok >= 20, ok  # signed in for real: the pages rendered, not redirects to the login
