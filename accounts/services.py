"""Writes for accounts: activation, second-factor enrolment and verification, factor changes.

Every service takes the acting person as ``actor=`` (``core.actor``), never the request. A
sensitive change (a second factor added, renamed or removed, new recovery codes) checks a recent
reauthentication itself with ``actor.require_recent_reauthentication()`` (docs/security.md §6);
the view checks too, so the browser is sent to the password page. What only the HTTP session can
do stays with the views (``accounts.sessions``): django-otp marks a session verified with the
request, and a key being enrolled waits in the session until its first code is confirmed. The
services get plain values instead: the current session's key (to sign out every other session)
and whether the session has passed the second factor.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets

from allauth.account.models import EmailAddress
from allauth.core.exceptions import RateLimited
from allauth.usersessions.adapter import get_adapter as get_usersessions_adapter
from allauth.usersessions.models import UserSession
from cryptography.fernet import InvalidToken
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django_otp.models import Device

from accounts import ratelimit
from accounts.models import (
    ActivationCode,
    AuthenticatorApp,
    RecoveryCode,
    RecoveryCodeSet,
    SignInEvent,
    User,
)
from accounts.selectors import sign_in_factors, user_has_confirmed_factor
from core import crypto
from core.actor import Actor, Kind
from core.models import ServiceAccount
from imaging.models import Patient
from imaging.services.patients import patient_account_link, patient_account_relink

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


def activation_code_check(*, actor: Actor, code: str, birth_date: dt.date) -> None:
    """Validate a code + date of birth before an account is created. Caller: the signup form,
    as the anonymous visitor. Rate limited per client IP (``ACCOUNT_RATE_LIMITS["activation"]``);
    every failure looks the same so a guesser learns nothing about which part was wrong. Writes
    and records nothing."""
    if not ratelimit.consume(action="activation", actor=actor):
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
    patient = patient_account_link(patient=row.patient, user_id=user.pk)
    # The patient's history is fetched from the PACS in the background (after commit, so a
    # rolled-back signup fetches nothing); a no-op when no PACS is configured. Imported here:
    # the DICOMweb client brings pydicom, which processes that never fetch need not load.
    from imaging.pacs.sync import pacs_patient_fetch_enqueue

    pacs_patient_fetch_enqueue(patient=patient)
    return patient


def _end_all_sessions(*, user_id: int) -> int:
    """Sign out every session of the account; return how many there were."""
    sessions = list(UserSession.objects.filter(user_id=user_id))
    get_usersessions_adapter().end_sessions(sessions)
    return len(sessions)


@transaction.atomic
def patient_record_move(*, actor: Actor, patient: Patient, user: User, reason: str) -> User | None:
    """Move ``patient``'s record to the patient account ``user`` for ``reason``
    (``imaging.services.patients.patient_account_relink``: who may, the checks, the event on the
    patient's log) and, once committed, sign out every session of the account that held it, so a
    browser left open there shows nothing more of the record. Returns that account (or None).
    Callers: ``relink_patient``, as ``Actor.system``."""
    previous_id = patient_account_relink(actor=actor, patient=patient, user=user, reason=reason)
    if previous_id is None:
        return None
    transaction.on_commit(lambda: _end_all_sessions(user_id=previous_id))
    return User.objects.get(pk=previous_id)


# --- Second factor ------------------------------------------------------------------------


def _sign_in_record(*, actor: Actor, method: str) -> None:
    event = SignInEvent(user_id=actor.user_id, method=method, ip=actor.ip, user_agent=actor.user_agent[:300])
    event.full_clean()
    event.save()


def _consume_code_attempt(actor: Actor, *, dry_run: bool) -> None:
    # ACCOUNT_RATE_LIMITS["mfa_code"]: per account and per client IP (docs/security.md §2).
    if not ratelimit.consume(action="mfa_code", actor=actor, dry_run=dry_run):
        raise RateLimited


def _end_other_sessions(*, user_id: int, session_key: str | None) -> None:
    """Sign out every session of the user except ``session_key``, the one acting
    (docs/security.md §5: a changed password or second factor ends the others)."""
    others = UserSession.objects.filter(user_id=user_id)
    if session_key:
        others = others.exclude(session_key=session_key)
    get_usersessions_adapter().end_sessions(list(others))


def _own_user(actor: Actor) -> User:
    if actor.user_id is None:
        raise PermissionDenied("Only a signed-in person manages their own second factors.")
    return User.objects.get(pk=actor.user_id)


def authenticator_enrolment_start(*, actor: Actor) -> str:
    """A new authenticator key for the enrolment page, encrypted with the field key
    (``core.crypto``) so that the session keeping it until the first code is confirmed holds no
    seed in clear (docs/security.md §4). Caller: the enrolment view, once per session (a reload
    shows the same key). Writes nothing: the device row is created only when a code confirms it
    (``authenticator_enrolment_confirm``)."""
    _own_user(actor)
    # 160-bit seed: RFC 4226 §4 recommends the HMAC-SHA1 output length.
    return crypto.encrypt(os.urandom(20))


@transaction.atomic
def recovery_codes_generate(*, actor: Actor, user: User) -> list[str]:
    """Replace ``user``'s recovery codes with fresh ones; return them in clear, once (only keyed
    hashes are stored). Callers: the enrolment and regeneration services as the user themselves,
    and the demo command as the system; anyone else is refused."""
    if actor.user_id != user.pk and actor.kind != Kind.SYSTEM:
        raise PermissionDenied("Recovery codes are made only for oneself.")
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


def authenticator_enrolment_confirm(
    *, actor: Actor, pending_key: str, token: str, name: str, session_verified: bool, session_key: str | None
) -> tuple[AuthenticatorApp, list[str] | None]:
    """Create the authenticator for ``pending_key`` (from ``authenticator_enrolment_start``) once
    ``token`` is its current code; return the device and, for a first factor, fresh recovery codes.

    Caller: the enrolment view, as the signed-in user, with plain values from its session:
    ``session_verified`` (has this session passed the second factor) and ``session_key``.
    First factor (enrolment after signup): records a SignInEvent; the view then marks its session
    verified (``accounts.sessions``: django-otp's login needs the request). Additional factor:
    needs a verified session and a recent reauthentication, returns no codes, and signs out the
    user's other sessions. Raises ``InvalidCode`` on a wrong code (or a key already confirmed by
    a parallel submit), ``RateLimited`` past ``ACCOUNT_RATE_LIMITS["mfa_code"]``.
    """
    user = _own_user(actor)
    _consume_code_attempt(actor, dry_run=True)
    device: AuthenticatorApp | None = None
    with transaction.atomic():
        # The user row serialises confirmations: the key has no row of its own to lock yet.
        User.objects.select_for_update().get(pk=user.pk)
        adding = user_has_confirmed_factor(user)
        if adding:
            if not session_verified:
                raise PermissionError("Verify your existing second factor first.")
            actor.require_recent_reauthentication()
        try:
            key = crypto.decrypt(pending_key)
        except (InvalidToken, TypeError, ValueError):
            key = None
        # A parallel submit of the same code may have confirmed this key already: that one won.
        taken = key is None or any(d.bin_key == key for d in AuthenticatorApp.objects.filter(user=user))
        candidate = AuthenticatorApp(user=user, name=name.strip()[:64] or "Authenticator app", confirmed=True)
        step = None
        if not taken:
            candidate.set_key(key)
            step = candidate.matching_step(token)
        if step is not None:
            candidate.last_t = step  # the confirming code is used up, like any other
            candidate.set_last_used_timestamp(commit=False)
            candidate.full_clean()
            candidate.save()
            device = candidate
            codes = None if adding else recovery_codes_generate(actor=actor, user=user)
            if not adding:
                _sign_in_record(actor=actor, method=SignInEvent.Method.ENROLMENT)
    if device is None:
        _consume_code_attempt(actor, dry_run=False)
        raise InvalidCode
    if adding:
        _end_other_sessions(user_id=user.pk, session_key=session_key)
    return device, codes


def second_factor_verify(*, actor: Actor, token: str) -> Device:
    """Check a TOTP or recovery code for the signed-in user whose session has only the password;
    return the device it belongs to. Caller: the verification view, which then marks its session
    verified (``accounts.sessions``: django-otp's login needs the request).

    Raises ``InvalidCode`` on a wrong code. Rate limited per account and per client IP. The device
    rows are locked while checking, so a code is accepted at most once even under parallel submits
    (RFC 6238 §5.2). Records a SignInEvent with the actor's IP and browser.
    """
    user = _own_user(actor)
    _consume_code_attempt(actor, dry_run=True)
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
        if matched is not None:
            _sign_in_record(actor=actor, method=method)
    if matched is None:
        _consume_code_attempt(actor, dry_run=False)
        raise InvalidCode
    return matched


def passkey_sign_in_record(*, actor: Actor, device: Device) -> None:
    """Record a sign-in after django-otp-webauthn accepted ``device`` (the actor's own passkey)
    as the second factor. Caller: the passkey view, which then marks its session verified."""
    if device.user_id != actor.user_id:
        raise PermissionDenied("Not this person's passkey.")
    _sign_in_record(actor=actor, method=SignInEvent.Method.PASSKEY)


def recovery_codes_regenerate(*, actor: Actor, session_key: str | None) -> list[str]:
    """New recovery codes for the actor (old ones stop working). Needs a recent
    reauthentication. A change of second factor, so the user's other sessions are signed out
    (docs/security.md §5); ``session_key`` is the one kept."""
    actor.require_recent_reauthentication()
    codes = recovery_codes_generate(actor=actor, user=_own_user(actor))
    _end_other_sessions(user_id=actor.user_id, session_key=session_key)
    return codes


def factor_rename(*, actor: Actor, device: Device, name: str) -> Device:
    """Rename one of the actor's own factors (the view selects it with
    ``selectors.factor_for_user``). Needs a recent reauthentication."""
    actor.require_recent_reauthentication()
    if device.user_id != actor.user_id:
        raise PermissionDenied("Not this person's factor.")
    device.name = name.strip()[:64]
    device.full_clean()
    device.save(update_fields=["name"])
    return device


class LastFactorError(Exception):
    """Removing this factor would leave the account without a second factor."""


@transaction.atomic
def factor_remove(*, actor: Actor, device: Device, session_key: str | None) -> None:
    """Remove one of the actor's own apps or passkeys; never the last one. Needs a recent
    reauthentication. Signs out the user's other sessions once committed (``session_key`` is
    the one kept)."""
    actor.require_recent_reauthentication()
    if device.user_id != actor.user_id:
        raise PermissionDenied("Not this person's factor.")
    user = User.objects.select_for_update().get(pk=actor.user_id)  # serialise concurrent removals
    others = [d for d in sign_in_factors(user) if d.persistent_id != device.persistent_id]
    if not others:
        raise LastFactorError
    device.delete()
    transaction.on_commit(lambda: _end_other_sessions(user_id=user.pk, session_key=session_key))


def sessions_end_others(*, actor: Actor, session_key: str | None) -> None:
    """Sign out every other session of the actor (docs/security.md §5). Caller: the receiver of
    allauth's password-changed signal."""
    _end_other_sessions(user_id=_own_user(actor).pk, session_key=session_key)


# --- Staff accounts -----------------------------------------------------------------------


@transaction.atomic
def privacy_officer_create(*, email: str, password: str, display_name: str) -> User:
    """Create a privacy officer with a verified email and the name patients will read in their
    access log (``display_name``: required, not an email address). They must still enrol a second
    factor at first sign-in; nothing here grants a verified session."""
    email = email.strip().lower()
    display_name = " ".join(display_name.split())
    if not display_name:
        raise ValueError("A display name is required: patients read it in their access log.")
    if User.objects.filter(email__iexact=email).exists():
        raise ValueError(f"An account with the email {email} already exists.")
    user = User(email=email, role=User.Role.PRIVACY_OFFICER, display_name=display_name)
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
