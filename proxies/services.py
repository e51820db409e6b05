"""Writes for proxies: codes, grants, switching whose record a proxy sees, ending a grant
(docs/security.md §28).

A code has the same format and storage rules as an activation code (``accounts.services``): 12
Crockford base32 symbols, only a keyed hash stored, single-use, expiring, checked with the
patient's date of birth at the same per-IP rate limit, and a wrong code and a wrong date of birth
answer the same way (``ProxyCodeError``).
"""

from __future__ import annotations

import datetime as dt
import secrets

from allauth.core.exceptions import RateLimited
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format

from accounts import ratelimit
from accounts.services import normalize_activation_code
from core import crypto
from core.actor import Actor, Kind
from imaging.models import Patient
from notices.models import Notice
from notices.services import notice_add
from proxies.models import ProxyCode, ProxyGrant, Relationship, Scope

_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PURPOSE = "proxy"
# Relationships the growing-up rules apply to: a caregiver is chosen by an adult patient.
GROWING_UP = frozenset({Relationship.PARENT, Relationship.GUARDIAN})
# What each scope allows beyond seeing scans (core.actor.Actor.allows).
SCOPE_ALLOWS = {
    Scope.VIEW: frozenset({"log"}),
    Scope.VIEW_CONSENT: frozenset({"log", "consent"}),
    Scope.FULL: frozenset({"log", "consent", "full"}),
}


class ProxyCodeError(Exception):
    """The code and date of birth do not match a usable proxy code (deliberately vague)."""


def age_on(birth_date: dt.date | None, today: dt.date) -> int | None:
    if birth_date is None:
        return None
    return today.year - birth_date.year - ((today.month, today.day) < (birth_date.month, birth_date.day))


def grant_allows(grant: ProxyGrant, *, today: dt.date | None = None) -> frozenset[str] | None:
    """What ``grant`` allows today beyond seeing scans, or None when it no longer reaches the record.

    The growing-up rules (a parent's or guardian's grant only): from ``PROXY_AGE_RESTRICTED`` the
    access log and consent need the young person's agreement; from ``PROXY_AGE_END`` the grant
    reaches nothing (``proxy_ages_apply`` then ends it for good and tells both)."""
    if not grant.is_active():
        return None
    allows = SCOPE_ALLOWS[Scope(grant.scope)]
    if grant.relationship in GROWING_UP:
        age = age_on(grant.patient.birth_date, today or timezone.localdate())
        if age is not None and age >= settings.PROXY_AGE_END:
            return None
        if age is not None and age >= settings.PROXY_AGE_RESTRICTED and grant.young_person_agreed_at is None:
            allows = allows - {"log", "consent"}
    return allows


def proxy_code_issue(
    *, patient: Patient, relationship: str, scope: str = Scope.VIEW, expires_days: int | None = None,
    ends_on: dt.date | None = None, invited_email: str = "",
) -> str:
    """Create a proxy code for ``patient`` and return it in clear, once. Callers: hospital staff
    (``issue_proxy_code``) and ``proxy_invite`` (an adult patient)."""
    code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(12))  # 60 bits, as activation codes
    now = timezone.now()
    days = expires_days if expires_days is not None else settings.ACTIVATION_CODE_TTL_DAYS
    row = ProxyCode(
        patient=patient, relationship=relationship, scope=scope, ends_on=ends_on, invited_email=invited_email,
        code_hash=crypto.keyed_hash(code, purpose=_PURPOSE), expires_at=now + dt.timedelta(days=days),
    )
    row.full_clean()
    row.save()
    return f"{code[:4]}-{code[4:8]}-{code[8:]}"


class InviteRefused(Exception):
    """Only an adult patient invites a proxy (a child's proxies come from the hospital)."""


@transaction.atomic
def proxy_invite(
    *, actor: Actor, email: str, relationship: str, scope: str, ends_on: dt.date | None = None,
    today: dt.date | None = None,
) -> ProxyCode:
    """An adult patient invites someone to act for them: a proxy code emailed to ``email``, for
    ``scope`` until ``ends_on``. Needs the patient themselves (never a proxy: a proxy cannot add
    proxies) and a recent password (docs/security.md §6, §28). The invitee still needs their own
    account, the code and the patient's date of birth."""
    if actor.kind != Kind.PATIENT or actor.patient_id is None:
        raise PermissionDenied("Only the patient invites people to act for them.")
    actor.require_recent_reauthentication()
    patient = Patient.objects.for_actor(actor).get(pk=actor.patient_id)
    age = age_on(patient.birth_date, today or timezone.localdate())
    if age is not None and age < settings.PROXY_AGE_END:
        raise InviteRefused
    code = proxy_code_issue(patient=patient, relationship=relationship, scope=scope, ends_on=ends_on, invited_email=email)
    row = ProxyCode.objects.get(code_hash=crypto.keyed_hash(normalize_activation_code(code), purpose=_PURPOSE))
    context = {
        "name": patient.name, "code": code, "scope": row.get_scope_display(), "site_name": settings.SITE_NAME,
        "url": settings.SITE_URL.rstrip("/") + reverse("proxies-redeem"),
        "expires": date_format(timezone.localtime(row.expires_at), "DATE_FORMAT"),
        "ends": date_format(ends_on, "DATE_FORMAT") if ends_on else "",
    }
    subject = render_to_string("proxies/email/invite_subject.txt", context).strip()
    body = render_to_string("proxies/email/invite_body.txt", context)
    transaction.on_commit(lambda: send_mail(subject, body, None, [email], fail_silently=True))
    return row


def _usable_code(*, actor: Actor, code: str, birth_date: dt.date, lock: bool) -> ProxyCode:
    # Rate limited per client IP like activation codes (ACCOUNT_RATE_LIMITS["activation"], §2).
    if not ratelimit.consume(action="activation", actor=actor):
        raise RateLimited
    digest = crypto.keyed_hash(normalize_activation_code(code), purpose=_PURPOSE)
    rows = ProxyCode.objects.select_related("patient").filter(code_hash=digest)
    row = (rows.select_for_update(of=("self",)) if lock else rows).first()
    # One answer for a wrong code, a wrong date of birth, a used or an expired code (§28).
    if row is None or not row.is_usable or row.patient.birth_date != birth_date:
        raise ProxyCodeError
    return row


def _grant_from(row: ProxyCode, *, actor: Actor, name: str) -> ProxyGrant:
    """Use ``row`` up and make the grant for the signed-in ``actor`` (row locked by the caller)."""
    if row.patient.user_id == actor.user_id:
        raise ProxyCodeError  # one's own record needs no proxy
    now = timezone.now()
    row.used_at, row.used_by_id, row.held_for_id = now, actor.user_id, None
    row.save(update_fields=["used_at", "used_by", "held_for"])
    # A new code for the same pair replaces the open grant (new scope, new end).
    ProxyGrant.objects.filter(patient=row.patient, proxy_id=actor.user_id, ended_at__isnull=True).update(
        ended_at=now, ended_by="Replaced by a new code", end_reason="replaced"
    )
    ends_at = None
    if row.ends_on is not None:
        ends_at = dt.datetime.combine(row.ends_on + dt.timedelta(days=1), dt.time(), tzinfo=timezone.get_current_timezone())
    grant = ProxyGrant(
        patient=row.patient, proxy_id=actor.user_id, proxy_name=name.strip(), relationship=row.relationship, scope=row.scope,
        since=now, ends_at=ends_at, code=row,
    )
    grant.full_clean(exclude=["code"])
    grant.save()
    return grant


def _require_person(actor: Actor) -> None:
    # A grant only for a signed-in person; the second-factor gate (portal middleware, §1) keeps
    # password-only sessions away from every caller of this.
    if actor.user_id is None or actor.kind not in (Kind.PATIENT, Kind.PROXY):
        raise PermissionDenied("Only a signed-in person can use a proxy code.")


@transaction.atomic
def proxy_code_redeem(*, actor: Actor, code: str, birth_date: dt.date, name: str) -> ProxyGrant:
    """The signed-in ``actor`` (their own account, second factor passed) becomes a proxy for the
    patient the code was issued for, named ``name`` to the patient and in the log. Rate limited per client IP like activation codes; a wrong
    code, a wrong date of birth, a used or expired code all raise ``ProxyCodeError``."""
    _require_person(actor)
    row = _usable_code(actor=actor, code=code, birth_date=birth_date, lock=True)
    return _grant_from(row, actor=actor, name=name)


def proxy_code_check(*, actor: Actor, code: str, birth_date: dt.date) -> ProxyCode:
    """Signing up with a proxy code (``/proxy/signup/``, anyone): the same checks, rate limit and
    single answer as redeeming (``ProxyCodeError``), without using the code up."""
    return _usable_code(actor=actor, code=code, birth_date=birth_date, lock=False)


def proxy_code_hold(*, code_id: int, user_id: int) -> None:
    """Keep the checked code for the account just made with it (in the signup transaction). No
    grant yet: the account has no second factor (docs/security.md §1); the code is redeemed on its
    first verified visit to ``/proxy/code/`` (``proxy_code_redeem_held``)."""
    ProxyCode.objects.filter(pk=code_id, used_at__isnull=True).update(held_for_id=user_id)


def proxy_code_held(*, actor: Actor) -> ProxyCode | None:
    """The usable code this account signed up with, if any (for ``/proxy/code/``)."""
    if actor.user_id is None:
        return None
    row = ProxyCode.objects.select_related("patient").filter(held_for_id=actor.user_id).first()
    return row if row is not None and row.is_usable else None


@transaction.atomic
def proxy_code_redeem_held(*, actor: Actor, name: str) -> ProxyGrant:
    """Redeem the code this account signed up with (already checked with the date of birth then).
    Raises ``ProxyCodeError`` when there is none or it was used, revoked or expired since."""
    _require_person(actor)
    row = (
        ProxyCode.objects.select_for_update(of=("self",)).select_related("patient")
        .filter(held_for_id=actor.user_id).first()
    )
    if row is None or not row.is_usable:
        raise ProxyCodeError
    return _grant_from(row, actor=actor, name=name)


def proxy_switch(*, actor: Actor, grant_id: int | None) -> ProxyGrant | None:
    """Check that the signed-in person may act under ``grant_id`` now (None: their own records)
    and mark it used. The view keeps the choice in the session; ``portal.actors`` checks the
    grant again on every request."""
    if actor.user_id is None:
        raise PermissionDenied
    if grant_id is None:
        return None
    grant = ProxyGrant.objects.active().select_related("patient").filter(pk=grant_id, proxy_id=actor.user_id).first()
    if grant is None or grant_allows(grant) is None:
        raise PermissionDenied("This grant has ended.")
    ProxyGrant.objects.filter(pk=grant.pk).update(last_used_at=timezone.now())
    return grant


def _end(grant: ProxyGrant, *, by: str, reason: str) -> ProxyGrant:
    grant.ended_at, grant.ended_by, grant.end_reason = timezone.now(), by, reason
    grant.save(update_fields=["ended_at", "ended_by", "end_reason"])
    return grant


@transaction.atomic
def proxy_end(*, actor: Actor, grant_id: int, reason: str = "") -> ProxyGrant:
    """The patient ends a proxy's access to their record (takes effect on the proxy's next
    request). A proxy cannot end or add proxies (it acts for the patient only within its scope);
    another patient's grant is ``ProxyGrant.DoesNotExist`` (a 404)."""
    if actor.kind != Kind.PATIENT or actor.patient_id is None:
        raise PermissionDenied("Only the patient manages who can act for them.")
    grant = ProxyGrant.objects.select_for_update().get(pk=grant_id, patient_id=actor.patient_id, ended_at__isnull=True)
    return _end(grant, by="You", reason=reason or "ended by the patient")


@transaction.atomic
def proxy_end_by_office(*, grant_id: int, reason: str) -> ProxyGrant:
    """The privacy office ends a grant (``end_proxy``)."""
    grant = ProxyGrant.objects.select_for_update().get(pk=grant_id, ended_at__isnull=True)
    return _end(grant, by="The privacy office", reason=reason)


# --- Growing up ---------------------------------------------------------------------------------


def _birthday(birth_date: dt.date, age: int) -> dt.date:
    """The day ``birth_date`` turns ``age`` (29 February: 1 March in a common year)."""
    try:
        return birth_date.replace(year=birth_date.year + age)
    except ValueError:
        return dt.date(birth_date.year + age, 3, 1)


def _announce(grant: ProxyGrant, *, key: str, subject: str, body: str) -> bool:
    """Tell both: a notice on the patient's record and an email to the patient's account (if any)
    and to the proxy. Once per ``key`` (the notice is the record of having told)."""
    if notice_add(patient_id=grant.patient_id, kind=Notice.Kind.PROXY_ACCESS, key=key, subject=subject,
                  link=reverse("proxies-people"), body=body) is None:
        return False
    recipients = [grant.proxy.email]
    if grant.patient.user_id is not None:
        recipients.append(grant.patient.user.email)
    for to in recipients:
        send_mail(subject, body, None, [to], fail_silently=True)
    return True


def _texts(grant: ProxyGrant, age: int, when: dt.date, *, ending: bool) -> tuple[str, str]:
    name, proxy = grant.patient.name, grant.proxy_name
    day = date_format(when, "DATE_FORMAT")
    if ending:
        return (
            f"{proxy}'s access to {name}'s records ends on {day}",
            f"On {day} {name} turns {age}. From that day {name}'s scans, access log and consent choices are "
            f"{name}'s alone, and {proxy} (their {grant.get_relationship_display()}) can no longer see them in "
            f"{settings.SITE_NAME}. {name} can give access again by asking the hospital for a new proxy code.",
        )
    return (
        f"From {day}, {name}'s access log and consent choices are {name}'s own",
        f"On {day} {name} turns {age}. From that day {proxy} (their {grant.get_relationship_display()}) can still "
        f"see {name}'s scans, but no longer who has seen them or {name}'s consent choices, unless {name} agrees. "
        f"{name} can agree on the page \"People who can act for me\".",
    )


@transaction.atomic
def proxy_ages_apply(*, today: dt.date | None = None) -> dict[str, int]:
    """The daily run of the growing-up rules (``apply_proxy_ages``): announce each change
    ``PROXY_AGE_NOTICE_DAYS`` ahead to both, and end for good the grants of a patient who reached
    ``PROXY_AGE_END`` (``grant_allows`` already stops them that very day, whether or not this ran).
    Returns counts: announced, ended."""
    today = today or timezone.localdate()
    ahead = dt.timedelta(days=settings.PROXY_AGE_NOTICE_DAYS)
    counts = {"announced": 0, "ended": 0}
    grants = ProxyGrant.objects.active().filter(relationship__in=GROWING_UP, patient__birth_date__isnull=False)
    for grant in grants.select_related("patient", "patient__user", "proxy").select_for_update(of=("self",)):
        birth = grant.patient.birth_date
        for age, ending in ((settings.PROXY_AGE_RESTRICTED, False), (settings.PROXY_AGE_END, True)):
            when = _birthday(birth, age)
            if today <= when <= today + ahead:
                subject, body = _texts(grant, age, when, ending=ending)
                counts["announced"] += _announce(grant, key=f"proxy:{grant.pk}:age:{age}", subject=subject, body=body)
        if age_on(birth, today) >= settings.PROXY_AGE_END:
            _end(grant, by=f"{settings.SITE_NAME}: {grant.patient.name} turned {settings.PROXY_AGE_END}",
                 reason="age")
            counts["ended"] += 1
    return counts


@transaction.atomic
def proxy_young_person_agree(*, actor: Actor, grant_id: int, agree: bool = True) -> ProxyGrant:
    """The young person (the patient, signed in themselves) lets their parent or guardian keep
    seeing the access log and consent choices, or takes that back."""
    if actor.kind != Kind.PATIENT or actor.patient_id is None:
        raise PermissionDenied("Only the patient decides this.")
    grant = ProxyGrant.objects.select_for_update().get(pk=grant_id, patient_id=actor.patient_id, ended_at__isnull=True)
    grant.young_person_agreed_at = timezone.now() if agree else None
    grant.save(update_fields=["young_person_agreed_at"])
    return grant
