"""Building the Actor for a signed-in person (``core.actor`` explains the Actor).

The shell builds it because it needs two apps: who the user is (``accounts``) and which patient
record is theirs (``imaging``). ``ActorMiddleware`` puts it on every request as ``request.actor``;
tests and commands that act as a person call ``actor_for_user``.

A person who chose, in the header switcher, to act for someone under a proxy grant (the grant's
id kept in the session as ``PROXY_SESSION_KEY``) gets a proxy Actor instead: that patient's
record only, what the grant allows, named as themselves. The grant is looked up again on every
request, so an ended grant stops the very next request (docs/security.md §28).
"""

from __future__ import annotations

import datetime as dt

from allauth.account.internal.flows.login import get_authentication_records
from django.conf import settings
from django.http import HttpRequest

from accounts.models import User
from core.actor import Actor, Kind, request_origin
from imaging.models import Patient
from proxies.selectors import SESSION_KEY as PROXY_SESSION_KEY
from proxies.selectors import grant_in_force

_KINDS = {
    User.Role.PATIENT: Kind.PATIENT,
    User.Role.PRIVACY_OFFICER: Kind.PRIVACY_OFFICER,
    User.Role.ADMINISTRATOR: Kind.ADMINISTRATOR,
}


def actor_for_user(
    user, *, ip: str | None = None, user_agent: str = "", reauthenticated_at: dt.datetime | None = None
) -> Actor:
    """The Actor for ``user``: a patient reaches their own linked record (if any), an officer or
    an administrator none until a flag narrows them (``Actor.investigating``)."""
    if user is None or not user.is_authenticated:
        return Actor.anonymous(ip=ip, user_agent=user_agent)
    kind = _KINDS[user.role]
    own = frozenset(Patient.objects.filter(user=user).values_list("pk", flat=True)) if kind == Kind.PATIENT else frozenset()
    officer = kind == Kind.PRIVACY_OFFICER
    return Actor(
        kind=kind,
        # Staff by their display name, never their email address (docs/security.md §19).
        name=user.public_name if kind != Kind.PATIENT else "Patient (self)",
        user_id=user.pk,
        patient_ids=own,
        organization=settings.HOSPITAL_NAME if officer else "",
        role="Privacy officer" if officer else "",
        ip=ip,
        user_agent=user_agent,
        reauthenticated_at=reauthenticated_at,
    )


def _reauthenticated_at(request: HttpRequest) -> dt.datetime | None:
    """When this session last re-entered the password (allauth's own record of it)."""
    records = [r for r in get_authentication_records(request, request.user) if r.get("reauthenticated")]
    if not records:
        return None
    return dt.datetime.fromtimestamp(records[-1]["at"], tz=dt.UTC)


def proxy_actor_for_user(
    user, grant_id: int, *, ip: str | None = None, user_agent: str = "", reauthenticated_at: dt.datetime | None = None
) -> Actor | None:
    """The Actor for ``user`` acting under grant ``grant_id``, or None when that grant is not
    theirs or no longer in force (ended, past its end date, or ended by the growing-up rules)."""
    found = grant_in_force(user_id=user.pk, grant_id=grant_id)
    if found is None:
        return None
    grant, allows = found
    return Actor(
        kind=Kind.PROXY,
        # The name the proxy gave when they used the code, never their email address (§19).
        name=grant.proxy_name,
        user_id=user.pk,
        patient_ids=frozenset({grant.patient_id}),
        proxy_grant_id=grant.pk,
        proxy_relationship=grant.relationship,
        proxy_allows=allows,
        ip=ip,
        user_agent=user_agent,
        reauthenticated_at=reauthenticated_at,
    )


def actor_for_request(request: HttpRequest) -> Actor:
    origin = request_origin(request)
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return Actor.anonymous(**origin)
    reauthenticated_at = _reauthenticated_at(request)
    grant_id = request.session.get(PROXY_SESSION_KEY)
    if grant_id is not None and user.role == User.Role.PATIENT:
        proxy = proxy_actor_for_user(user, grant_id, **origin, reauthenticated_at=reauthenticated_at)
        if proxy is not None:
            return proxy
        # The grant ended: the request acts as the person themselves (proxies.middleware has
        # already explained the end in plain words and forgotten the grant).
    return actor_for_user(user, **origin, reauthenticated_at=reauthenticated_at)
