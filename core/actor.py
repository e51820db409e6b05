"""The Actor: who is acting, on whose records, from where (the one door to patient data).

Every request, command, task and API call builds one Actor, and every service and selector that
touches a patient's records takes it as ``actor=`` (keyword-only), never a ``request``:

- ``patient_ids`` and ``all_patients`` say whose records it may reach. Every patient-owned
  model's ``for_actor(actor)`` (``core.querysets``) narrows to exactly those; anything outside
  answers 404.
- ``kind``, ``name``, ``organization`` and ``role`` are how the access log names it
  (``core.access_log.record``).
- ``ip``, ``user_agent`` and ``reauthenticated_at`` come from the request, so a service can check
  a recent password itself (docs/security.md §6) without seeing the request.

Who builds it: ``portal.actors`` for signed-in requests (a middleware sets ``request.actor``),
``core.api`` for API tokens, ``Actor.system`` for commands and Celery tasks. A proxy (a parent,
guardian or caregiver, ``proxies``) is a person acting for one patient under a grant: its
``patient_ids`` is that patient only, ``proxy_allows`` what the grant's scope allows, and the log
names the proxy "on behalf of" the patient.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from allauth.account.adapter import get_adapter
from allauth.core.exceptions import ReauthenticationRequired
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.utils import timezone

if TYPE_CHECKING:
    from core.models import ServiceAccount


class Kind(enum.StrEnum):
    PATIENT = "patient"
    PRIVACY_OFFICER = "privacy_officer"
    ADMINISTRATOR = "administrator"
    SERVICE = "service"
    # A person acting for one patient under a proxy grant (proxies.ProxyGrant).
    PROXY = "proxy"
    SYSTEM = "system"
    ANONYMOUS = "anonymous"
    # A clinician who opened a patient's share link with both codes (sharing.links).
    SHARE_RECIPIENT = "share_recipient"


# People sign in; a person's sensitive actions need a recent password. Systems never do.
HUMAN_KINDS = frozenset({Kind.PATIENT, Kind.PRIVACY_OFFICER, Kind.ADMINISTRATOR, Kind.PROXY})


def request_origin(request: HttpRequest) -> dict[str, str | None]:
    """Where a request came from, as the access log records it: the client IP as allauth's
    adapter reads it (a forwarded address only from the configured trusted proxy, docs/security.md
    §3) and the User-Agent header."""
    return {"ip": get_adapter(request).get_client_ip(request), "user_agent": request.META.get("HTTP_USER_AGENT", "")}


@dataclass(frozen=True)
class Actor:
    kind: Kind
    # How the access log names the actor: "Patient (self)", an officer's display name, a system's name.
    name: str
    user_id: int | None = None
    service_account_id: int | None = None
    # Whose records the actor may reach. A patient: their own record. An officer: none until they
    # open a flag (``investigating``). Commands, tasks and API tokens: every record
    # (``all_patients``), each limited instead by what the command or the token's scope does.
    patient_ids: frozenset[int] = frozenset()
    all_patients: bool = False
    organization: str = ""
    role: str = ""
    # For service accounts: the subset of ServiceAccount.ActorType it reports as.
    service_type: str = ""
    scopes: frozenset[str] = frozenset()
    ip: str | None = None
    user_agent: str = ""
    reauthenticated_at: dt.datetime | None = field(default=None, compare=False)
    # A proxy only: the grant, how the proxy is related ("parent"), and what its scope and the
    # patient's age allow beyond seeing scans ("log", "consent", "full"; proxies.services.grant_allows).
    proxy_grant_id: int | None = None
    proxy_relationship: str = ""
    proxy_allows: frozenset[str] = frozenset()
    # A share recipient: the share it came through and the only studies it may reach
    # (core.querysets narrows to them); None for every other kind, which reaches whole records.
    share_id: int | None = None
    study_ids: frozenset[int] | None = None

    # --- Constructors for the actors that are not a signed-in person (those: portal.actors) ------

    @classmethod
    def system(cls, name: str, *, organization: str | None = None) -> Actor:
        """A command or Celery task run by the hospital (an import, an integrity check, packaging).

        It reaches every record: what it may do is limited by the code it runs, not by a person.
        """
        org = settings.HOSPITAL_NAME if organization is None else organization
        return cls(kind=Kind.SYSTEM, name=name, organization=org, all_patients=True)

    @classmethod
    def for_service(cls, account: ServiceAccount, *, ip: str | None = None, user_agent: str = "") -> Actor:
        """A downstream system calling an API with its bearer token (``core.api``). It may ask
        about any patient; its token's scopes limit which APIs it may call."""
        return cls(
            kind=Kind.SERVICE,
            name=account.name,
            service_account_id=account.pk,
            all_patients=True,
            organization=account.organization,
            service_type=account.actor_type,
            scopes=frozenset(account.scopes),
            ip=ip,
            user_agent=user_agent,
        )

    @classmethod
    def anonymous(cls, *, ip: str | None = None, user_agent: str = "") -> Actor:
        return cls(kind=Kind.ANONYMOUS, name="", ip=ip, user_agent=user_agent)

    # --- Questions services ask -------------------------------------------------------------

    @property
    def ref(self) -> str:
        """A stable reference to the actor for the access log's ``actor_ref``."""
        if self.user_id is not None:
            return f"user:{self.user_id}"
        if self.service_account_id is not None:
            return f"service:{self.service_account_id}"
        if self.share_id is not None:
            return f"share:{self.share_id}"
        return f"system:{self.name}" if self.kind == Kind.SYSTEM else ""

    @property
    def patient_id(self) -> int | None:
        """The one record a patient actor owns (their own), or a proxy acts for; None for everyone else."""
        if self.kind in (Kind.PATIENT, Kind.PROXY) and len(self.patient_ids) == 1:
            return next(iter(self.patient_ids))
        return None

    @property
    def is_proxy(self) -> bool:
        return self.kind == Kind.PROXY

    def allows(self, capability: str) -> bool:
        """Whether a proxy's grant allows ``capability`` ("log", "consent", "full"); everyone
        else is limited by their kind and ``patient_ids`` instead (docs/security.md §28)."""
        return self.kind != Kind.PROXY or capability in self.proxy_allows

    @property
    def is_officer(self) -> bool:
        return self.kind == Kind.PRIVACY_OFFICER

    def may_reach(self, patient_id: int | None) -> bool:
        return patient_id is not None and (self.all_patients or patient_id in self.patient_ids)

    def investigating(self, patient_ids: int | Iterable[int]) -> Actor:
        """The privacy officer narrowed to the records of the flag they opened.

        Officers reach a patient's records only through a flag (or the paper-consent form), and
        every look is then logged under their name. Anyone else raises ``PermissionDenied``.
        """
        if not self.is_officer:
            raise PermissionDenied("Only the privacy office investigates.")
        ids = {patient_ids} if isinstance(patient_ids, int) else set(patient_ids)
        return replace(self, patient_ids=frozenset(ids))

    def require_recent_reauthentication(self, *, now: dt.datetime | None = None) -> None:
        """Raise allauth's ``ReauthenticationRequired`` unless this person re-entered their
        password within ``ACCOUNT_REAUTHENTICATION_TIMEOUT`` (docs/security.md §6).

        The view checks too (``core.reauth``, which sends the browser to the password page);
        this is the service's own check, so no other caller can skip it. Systems and API tokens
        have no password to re-enter and pass.
        """
        if self.kind not in HUMAN_KINDS:
            return
        now = now or timezone.now()
        timeout = dt.timedelta(seconds=settings.ACCOUNT_REAUTHENTICATION_TIMEOUT)
        if self.reauthenticated_at is None or now - self.reauthenticated_at >= timeout:
            raise ReauthenticationRequired()
