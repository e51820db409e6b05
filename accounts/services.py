"""Writes for accounts: activation, second-factor enrolment and verification, factor changes.

Sensitive changes take the ``request`` because they must check a recent reauthentication
(docs/security.md §6) and act on the session (rotation, signing out other sessions).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets

from allauth.account.adapter import get_adapter
from allauth.account.models import EmailAddress
from allauth.core import ratelimit
from allauth.core.exceptions import RateLimited
from allauth.usersessions.internal.flows.sessions import end_other_sessions
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django_otp import login as otp_login
from django_otp.models import Device

from accounts.models import (
    ActivationCode,
    AuthenticatorApp,
    RecoveryCode,
    RecoveryCodeSet,
    SignInEvent,
    User,
)
from accounts.selectors import user_has_confirmed_factor
from core import crypto
from core.models import ServiceAccount
from core.reauth import require_recent_reauthentication
from imaging.models import Patient

# Crockford's base32: no I, L, O, U, so a code read aloud or typed from a letter survives.
_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE_TYPOS = str.maketrans({"O": "0", "I": "1", "L": "1"})


class InvalidCode(Exception):
    """The second-factor code was wrong, expired or already used."""


class ActivationError(Exception):
    """The activation code and date of birth do not match a usable code (deliberately vague)."""


# --- Activation ---------------------------------------------------------------------------


def normalize_activation_code(raw: str) -> str:
    return "".join(ch for ch in raw.upper() if ch.isalnum()).translate(_CODE_TYPOS)


def activation_code_issue(*, patient: Patient) -> str:
    """Create a code for ``patient`` and return it in clear, once. Callers: hospital staff
    (``issue_activation_code``). Earlier unused codes for the patient are revoked."""
    # 12 symbols of base32 = 60 bits: unguessable at the activation rate limit.
    code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(12))
    now = timezone.now()
    with transaction.atomic():
        ActivationCode.objects.filter(patient=patient, used_at__isnull=True, revoked_at__isnull=True).update(
            revoked_at=now
        )
        row = ActivationCode(
            patient=patient,
            code_hash=crypto.keyed_hash(code, purpose="activation"),
            expires_at=now + dt.timedelta(days=settings.ACTIVATION_CODE_TTL_DAYS),
        )
        row.full_clean()
        row.save()
    return f"{code[:4]}-{code[4:8]}-{code[8:]}"


def _matching_code(code: str, birth_date: dt.date, *, lock: bool) -> ActivationCode:
    qs = ActivationCode.objects.select_related("patient")
    if lock:
        qs = qs.select_for_update(of=("self",))
    row = qs.filter(code_hash=crypto.keyed_hash(normalize_activation_code(code), purpose="activation")).first()
    if row is None or not row.is_usable or row.patient.birth_date != birth_date or row.patient.user_id:
        raise ActivationError
    return row


def activation_code_check(*, request: HttpRequest, code: str, birth_date: dt.date) -> None:
    """Validate a code + date of birth before an account is created. Rate limited per IP;
    every failure looks the same so a guesser learns nothing about which part was wrong."""
    if not ratelimit.consume(request, action="activation"):
        raise RateLimited
    _matching_code(code, birth_date, lock=False)


@transaction.atomic
def patient_account_activate(*, user: User, code: str, birth_date: dt.date) -> Patient:
    """Link ``user`` to the patient the code was issued for and use the code up. Called inside
    the signup transaction; the code row is locked so two signups cannot share one code."""
    row = _matching_code(code, birth_date, lock=True)
    now = timezone.now()
    row.used_at = now
    row.used_by = user
    row.save(update_fields=["used_at", "used_by"])
    patient = row.patient
    patient.user = user
    patient.save(update_fields=["user"])
    # The patient's history is fetched from the PACS in the background (after commit, so a
    # rolled-back signup fetches nothing); a no-op when no PACS is configured. Imported here:
    # the DICOMweb client brings pydicom, which processes that never fetch need not load.
    from imaging.pacs.sync import pacs_patient_fetch_enqueue

    pacs_patient_fetch_enqueue(patient=patient)
    return patient


# --- Second factor ------------------------------------------------------------------------


def _client(request: HttpRequest) -> tuple[str | None, str]:
    return get_adapter(request).get_client_ip(request), request.META.get("HTTP_USER_AGENT", "")[:300]


def _mark_verified(request: HttpRequest, device: Device, method: str) -> None:
    # A new session id once the second factor passes (docs/security.md §5), like Django does at login.
    request.session.cycle_key()
    otp_login(request, device)
    ip, agent = _client(request)
    event = SignInEvent(user=request.user, method=method, ip=ip, user_agent=agent)
    event.full_clean()
    event.save()


def _consume_code_attempt(request: HttpRequest, *, dry_run: bool) -> None:
    if not ratelimit.consume(request, action="mfa_code", user=request.user, dry_run=dry_run):
        raise RateLimited


def authenticator_enrolment_start(*, user: User) -> AuthenticatorApp:
    """An unconfirmed authenticator for the enrolment page (reused until confirmed)."""
    device = AuthenticatorApp.objects.filter(user=user, confirmed=False).order_by("-pk").first()
    if device is None:
        device = AuthenticatorApp(user=user, name="Authenticator app", confirmed=False)
        # 160-bit seed: RFC 4226 §4 recommends the HMAC-SHA1 output length.
        device.set_key(os.urandom(20))
        device.full_clean()
        device.save()
    return device


def recovery_codes_generate(user: User) -> list[str]:
    """Replace the user's recovery codes with fresh ones; return them in clear, once."""
    codeset, _ = RecoveryCodeSet.objects.get_or_create(user=user, defaults={"name": "Recovery codes", "confirmed": True})
    codeset.codes.all().delete()
    codes = []
    for _ in range(settings.RECOVERY_CODE_COUNT):
        # 10 symbols of base32 = 50 bits each.
        raw = "".join(secrets.choice("abcdefghjkmnpqrstvwxyz23456789") for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    RecoveryCode.objects.bulk_create(
        [RecoveryCode(device=codeset, code_hash=crypto.keyed_hash(c.replace("-", ""), purpose="recovery")) for c in codes]
    )
    return codes


def authenticator_enrolment_confirm(*, request: HttpRequest, device: AuthenticatorApp, token: str, name: str) -> list[str] | None:
    """Confirm a new authenticator with its first code.

    First factor (enrolment after signup): marks the session verified and returns fresh
    recovery codes. Raises ``InvalidCode`` on a wrong code. Additional factor: needs a verified session and a recent reauthentication,
    returns None, and signs out the user's other sessions.
    """
    user = request.user
    adding = user_has_confirmed_factor(user)
    if adding:
        if not user.is_verified():
            raise PermissionError("Verify your existing second factor first.")
        require_recent_reauthentication(request)
    _consume_code_attempt(request, dry_run=True)
    with transaction.atomic():
        # None when a parallel submit of the same code confirmed it first: that one won.
        locked = AuthenticatorApp.objects.select_for_update().filter(pk=device.pk, user=user, confirmed=False).first()
        if locked is None or not locked.verify_token(token):
            ok = False
        else:
            ok = True
            locked.confirmed = True
            locked.name = name.strip()[:64] or "Authenticator app"
            locked.full_clean()
            locked.save()
            codes = None if adding else recovery_codes_generate(user)
    if not ok:
        _consume_code_attempt(request, dry_run=False)
        raise InvalidCode
    if adding:
        end_other_sessions(request, user)
    else:
        _mark_verified(request, locked, SignInEvent.Method.ENROLMENT)
    return codes


def second_factor_verify(*, request: HttpRequest, token: str) -> Device:
    """Check a TOTP or recovery code for the signed-in, unverified user.

    Raises ``InvalidCode`` on a wrong code. Rate limited per account and per client IP. The device rows are locked while checking, so a
    code is accepted at most once even under parallel submits (RFC 6238 §5.2). On success the
    session id is rotated, the session marked verified and a SignInEvent written.
    """
    user = request.user
    _consume_code_attempt(request, dry_run=True)
    token = token.strip()
    matched: Device | None = None
    method = SignInEvent.Method.TOTP
    with transaction.atomic():
        digits = token.replace(" ", "")
        if digits.isdigit():
            for device in AuthenticatorApp.objects.select_for_update().filter(user=user, confirmed=True):
                if device.verify_token(digits):
                    matched = device
                    break
        else:
            codeset = RecoveryCodeSet.objects.select_for_update().filter(user=user, confirmed=True).first()
            if codeset is not None and codeset.verify_token(token):
                matched = codeset
                method = SignInEvent.Method.RECOVERY_CODE
    if matched is None:
        _consume_code_attempt(request, dry_run=False)
        raise InvalidCode
    _mark_verified(request, matched, method)
    return matched


def passkey_verified(*, request: HttpRequest, device: Device) -> None:
    """Called after django-otp-webauthn accepted a passkey as the second factor."""
    _mark_verified(request, device, SignInEvent.Method.PASSKEY)


def recovery_codes_regenerate(*, request: HttpRequest) -> list[str]:
    """New recovery codes (old ones stop working). Needs a recent reauthentication. A change
    of second factor, so the user's other sessions are signed out (docs/security.md §5)."""
    require_recent_reauthentication(request)
    with transaction.atomic():
        codes = recovery_codes_generate(request.user)
    end_other_sessions(request, request.user)
    return codes


def factor_rename(*, request: HttpRequest, device: Device, name: str) -> Device:
    require_recent_reauthentication(request)
    device.name = name.strip()[:64]
    device.full_clean()
    device.save(update_fields=["name"])
    return device


class LastFactorError(Exception):
    """Removing this factor would leave the account without a second factor."""


@transaction.atomic
def factor_remove(*, request: HttpRequest, device: Device) -> None:
    """Remove an app or passkey; never the last one. Signs out the user's other sessions."""
    require_recent_reauthentication(request)
    user = request.user
    User.objects.select_for_update().get(pk=user.pk)  # serialise concurrent removals
    others = [d for d in _factors(user) if d.persistent_id != device.persistent_id]
    if not others:
        raise LastFactorError
    device.delete()
    transaction.on_commit(lambda: end_other_sessions(request, user))


def _factors(user: User) -> list[Device]:
    from accounts.selectors import sign_in_factors

    return sign_in_factors(user)


def sessions_after_password_change(*, request: HttpRequest) -> None:
    """Sign out every other session of the user (docs/security.md §5)."""
    end_other_sessions(request, request.user)


# --- Staff accounts -----------------------------------------------------------------------


@transaction.atomic
def privacy_officer_create(*, email: str, password: str) -> User:
    """Create a privacy officer with a verified email. They must still enrol a second factor
    at first sign-in; nothing here grants a verified session."""
    email = email.strip().lower()
    if User.objects.filter(email__iexact=email).exists():
        raise ValueError(f"An account with the email {email} already exists.")
    user = User(email=email, role=User.Role.PRIVACY_OFFICER)
    validate_password(password, user)
    user.set_password(password)
    user.full_clean()
    user.save()
    EmailAddress.objects.create(user=user, email=email, primary=True, verified=True)
    return user


# --- Service accounts ---------------------------------------------------------------------

API_TOKEN_PREFIX = "lbx_"


@transaction.atomic
def service_account_create(
    *, name: str, organization: str, scopes: list[str], actor_type: str = "service"
) -> tuple[ServiceAccount, str]:
    """Create a service account; return it and its bearer token, which is never shown again.
    Callers: administrators (``create_service_account``)."""
    # 32 random bytes: the token is the only credential, so it carries 256 bits.
    token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    account = ServiceAccount(
        name=name.strip(),
        organization=organization.strip(),
        scopes=sorted(set(scopes)),
        actor_type=actor_type,
        token_prefix=token[:10],
        token_hash=crypto.keyed_hash(token, purpose="api-token"),
    )
    account.full_clean()
    account.save()
    return account, token


def service_account_revoke(*, account: ServiceAccount) -> None:
    ServiceAccount.objects.filter(pk=account.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
