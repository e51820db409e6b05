"""The second-factor gate, walked over every URL pattern the resolver knows (docs/security.md §1).

A new view cannot slip past: every pattern is requested with an anonymous session and with a
password-only session; a view that answers them must be on the reviewed lists below.
"""

from __future__ import annotations

import pytest
from django.urls import resolve
from django.urls.exceptions import Resolver404

from tests.conftest import login_password_only
from tests.factories import UserFactory
from tests.routes import all_routes

# Pages anyone may open. Reviewed: none of them shows patient data.
PUBLIC = {
    "account_login",
    "account_signup",
    "proxies-signup",  # signup with a proxy code: no patient data, the code is only held (§28)
    "account_logout",
    "account_reset_password",
    "account_reset_password_done",
    "account_reset_password_from_key",
    "account_reset_password_from_key_done",
    "account_confirm_email",
    "account_email_verification_sent",
    "account_inactive",
    "account_confirm_login_code",  # login by code is off; the page only redirects
    "portal-healthz",
    "portal-signing-key",
    "portal-webauthn-jsi18n",
    "portal-openapi",
    # A share link's pages: the recipient has no account; the access code and the emailed code
    # open them (sharing.links, docs/security.md §27; tests/portal/test_authz_matrix.py's recipient).
    "sharing-open",
    "sharing-open-verify",
    "sharing-open-studies",
    "sharing-open-download",
    "sharing-open-viewer",
    "sharing-open-frame",
}
# The second-factor steps: a password-only session may open these and nothing else.
SECOND_FACTOR_STEPS = {
    "accounts-2fa-enrol",
    "accounts-2fa-verify",
    "accounts-passkey-auth-begin",
    "accounts-passkey-auth-complete",
}
# Token-authenticated APIs: no session (verified or not) opens them, only a service token.
API_PREFIX = "/api/v1/"
# (path, url_name, pattern) for every concrete view in the URLconf.
ROUTES = [(route.sample_path, route.name, route.regex) for route in all_routes()]


def _ids():
    return [f"{name or '-'} {path}" for path, name, _ in ROUTES]


def test_every_sample_path_resolves_to_its_own_pattern():
    for path, name, regex in ROUTES:
        try:
            match = resolve(path)
        except Resolver404:  # pragma: no cover - the assertion message is the point
            pytest.fail(f"sample {path} for {regex} does not resolve")
        assert match.url_name == (name.split(":")[-1] if name else match.url_name)


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "name", "regex"), ROUTES, ids=_ids())
def test_password_only_session_gets_nothing_but_the_factor_step(client, path, name, regex):
    user = UserFactory(is_staff=True, is_superuser=True)  # the strongest account, so admin is covered
    from tests.factories import AuthenticatorAppFactory

    AuthenticatorAppFactory(user=user)
    login_password_only(client, user)
    for method in ("get", "post"):
        response = getattr(client, method)(path)
        if path.startswith(API_PREFIX) and name not in PUBLIC:
            assert response.status_code in (401, 405), f"{method.upper()} {path} answered {response.status_code}"
            continue
        if name in PUBLIC or name in SECOND_FACTOR_STEPS:
            assert response.status_code != 500
            continue
        assert response.status_code == 302, f"{method.upper()} {path} ({name}) answered {response.status_code}"
        assert response["Location"].startswith("/account/2fa/"), f"{path} redirected to {response['Location']}"


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "name", "regex"), ROUTES, ids=_ids())
def test_anonymous_visitor_is_sent_to_login(client, path, name, regex):
    if name in PUBLIC:
        return
    response = client.get(path)
    if path.startswith(API_PREFIX):
        assert response.status_code in (401, 405), f"GET {path} ({name}) answered {response.status_code}"
        return
    assert response.status_code in (302, 401), f"GET {path} ({name}) answered {response.status_code}"
    if response.status_code == 302:
        location = response["Location"]
        if location.startswith("/admin/login/"):
            # The admin sends visitors to its login view, which hands over to ours.
            location = client.get(location)["Location"]
        assert location.startswith("/accounts/login/"), f"{path} redirected to {location}"


@pytest.mark.django_db
def test_password_only_user_without_factor_is_sent_to_enrolment(client):
    user = UserFactory()
    login_password_only(client, user)
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/account/2fa/setup/")


@pytest.mark.django_db
def test_gate_keeps_the_page_they_wanted(client, unverified_user):
    login_password_only(client, unverified_user)
    response = client.get("/account/security/")
    assert response["Location"] == "/account/2fa/?next=%2Faccount%2Fsecurity%2F"


def test_public_views_are_exactly_the_reviewed_list():
    """A view newly marked public (or a factor step) must be reviewed and added above."""
    marked_public = set()
    marked_step = set()
    for path, name, _ in ROUTES:
        func = resolve(path).func
        if getattr(func, "second_factor_step", False):
            marked_step.add(name)
        elif (
            getattr(func, "login_required", True) is False
            and not (name or "").startswith("admin:")
            and not path.startswith(API_PREFIX)
        ):
            marked_public.add(name)
    assert marked_step == SECOND_FACTOR_STEPS
    assert marked_public <= PUBLIC | {None}, f"unreviewed public views: {marked_public - PUBLIC}"
