"""Share links: a patient gives a clinician a link, an access code and (by the clinician's email) a
one-time code, to see some of their studies read-only until the share expires or is revoked
(issue 20; docs/security.md §27).

Services (writes) and the recipient's reads. The patient's side takes the patient's ``actor`` and
reaches shares through ``Share.objects.for_actor``; the recipient's side starts from the token in
the URL and the visit secret the browser holds in its session, and builds the recipient
``Actor`` (``Kind.SHARE_RECIPIENT``) whose reach is the share's patient and only its studies
(``core.querysets``). Every look then goes through ``imaging.services.viewing`` with that actor,
so the patient's log names "<recipient> at <organisation>".

Secrets: the token (32 random bytes), the access code (50 bits), the visit secret and the
one-time code are random (``secrets``), and only their HMAC-SHA256 under the site's secret key is
stored (``salted_hmac``): a database dump alone opens nothing, and lookups by token are an index
hit. Every refusal (unknown token, wrong code, expired, revoked) is the same ``ShareRefused``.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import segno
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Count, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from audit.models import AccessEvent
from core import access_log
from core.actor import Actor, Kind
from core.links import site_url
from exports.models import ExportRequest
from exports.services import archive_path, export_request
from imaging.models import Study
from imaging.selectors import patient_get, study_list
from notices.models import Notice
from notices.services import notice_add
from sharing.models import Share, ShareVisit

# An access code: 10 characters without look-alikes (0/O, 1/I/L), about 50 bits, shown as XXXXX-XXXXX.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 10
# The one-time code emailed to the recipient: 6 digits, valid 10 minutes, 5 tries (then a new
# access code entry sends a new one); the rate limits in the views bound guessing across visits.
OTP_DIGITS = 6
OTP_VALID = dt.timedelta(minutes=10)
OTP_TRIES = 5
# A verified visit lasts until the share ends or this long, whichever is first.
VISIT_VALID = dt.timedelta(hours=8)
DAYS_MIN, DAYS_MAX, DAYS_DEFAULT = 1, 30, 7
TOKEN_MAX = 100  # longer tokens are refused before hashing (no 500, no work on junk)


# The one answer to every refusal (docs/security.md §27): it never says which part was wrong.
REFUSED_MESSAGE = (
    "This link cannot be opened: the code is wrong, or the share has ended (it expired or the patient "
    "withdrew it). Ask the patient for a new link if you still need the scans."
)


class ShareRefused(Exception):  # noqa: N818 - the one answer to every failure, not a bug
    """Unknown token, wrong or expired code, expired or revoked share: all the same to the caller."""


def _hash(kind: str, value: str) -> str:
    # docs/security.md §27: a keyed hash (HMAC-SHA256 with SECRET_KEY), so a dump opens nothing.
    return salted_hmac(f"lightbox.share.{kind}", value, algorithm="sha256").hexdigest()


def session_key(token: str) -> str:
    """Where a browser's session keeps its visit of this link (a hash: the token itself is never
    stored, not even in a session)."""
    return "share:" + _hash("session", token[:TOKEN_MAX])[:32]


def qr_svg(url: str) -> str:
    """The link as a QR code, an inline SVG (segno, a maintained encoder), for the patient to show
    or print."""
    return segno.make(url, error="m").svg_inline(scale=4, dark="#000", light="#fff", title="QR code of the share link")


def normalize_code(code: str) -> str:
    """The access code as typed: case, spaces and dashes do not matter."""
    return "".join(ch for ch in code.upper() if ch.isalnum())[:40]


def format_code(code: str) -> str:
    return f"{code[:5]}-{code[5:]}"


# --- The patient's side ----------------------------------------------------------------------


@dataclass(frozen=True)
class Created:
    share: Share
    token: str  # shown once: only its hash is kept
    code: str  # "XXXXX-XXXXX", shown once
    passphrase: str = ""  # the download archive's, shown once (view and download only)

    @property
    def path(self) -> str:
        return reverse("sharing-open", kwargs={"token": self.token})

    @property
    def url(self) -> str:
        return site_url(self.path)


@transaction.atomic
def share_create(
    *, actor: Actor, study_ids: list[int], recipient_name: str, recipient_organization: str,
    recipient_email: str, days: int, allow_download: bool,
) -> Created:
    """The patient ``actor`` shares some of their studies with a clinician.

    Needs a recent password (docs/security.md §6; the view checks too). ``ValidationError`` for
    studies not their own or days outside 1-30. Records no access event: nothing was seen yet;
    each look of the recipient is recorded when it happens."""
    actor.require_recent_reauthentication()
    patient = patient_get(actor=actor)
    if patient is None or actor.kind != Kind.PATIENT:
        raise PermissionDenied("Only a patient shares their own studies.")
    if not DAYS_MIN <= days <= DAYS_MAX:
        raise ValidationError(f"Choose between {DAYS_MIN} and {DAYS_MAX} days.")
    studies = list(study_list(actor=actor).filter(pk__in=study_ids))
    if not studies or len(studies) != len(set(study_ids)):
        raise ValidationError("Choose among your own studies.")
    token = secrets.token_urlsafe(32)
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    share = Share(
        patient=patient, created_by_id=actor.user_id, recipient_name=recipient_name.strip(),
        recipient_organization=recipient_organization.strip(), recipient_email=recipient_email.strip(),
        allow_download=allow_download, token_hash=_hash("token", token), code_hash=_hash("code", code),
        expires_at=timezone.now() + dt.timedelta(days=days),
    )
    passphrase = ""
    if allow_download:
        # The same encrypted archive as the patient's own exports (the patient's export, in their
        # log as theirs): the doctor downloads it through the link with the passphrase, for as long
        # as the link lasts (the archive is kept that long, not only EXPORTS_EXPIRY_DAYS).
        requested = export_request(actor=actor, study_ids=[s.pk for s in studies], deidentify=False,
                                   keep_until=share.expires_at)
        share.export, passphrase = requested.export, requested.passphrase
    share.full_clean()
    share.save()
    share.studies.set(studies)
    return Created(share, token, format_code(code), passphrase)


@transaction.atomic
def share_revoke(*, actor: Actor, share_id: int, reason: str = "") -> Share:
    """End a share now. The patient revokes their own (``Http404``-like ``Share.DoesNotExist`` for
    anyone else's); the privacy office's command revokes any with a reason. Revoking twice
    changes nothing. The recipient's next request is refused."""
    share = Share.objects.for_actor(actor).select_for_update().filter(pk=share_id).first()
    if share is None:
        raise Share.DoesNotExist("No such share.")
    if share.revoked_at is None:
        share.revoked_at = timezone.now()
        share.revoked_by = "you" if actor.kind == Kind.PATIENT else "the privacy office"
        share.revoked_reason = reason[:300]
        share.save(update_fields=["revoked_at", "revoked_by", "revoked_reason"])
        user = share.created_by
        if actor.kind != Kind.PATIENT and user is not None and user.email:
            # The patient did not end it: they are told who did and why (no clinical detail).
            context = {"site_name": settings.SITE_NAME, "recipient": share.recipient_name,
                       "organization": share.recipient_organization, "reason": share.revoked_reason,
                       "url": site_url(reverse("sharing-list"))}
            subject = render_to_string("sharing/email/revoked_subject.txt", context).strip()
            body = render_to_string("sharing/email/revoked_body.txt", context)
            address = user.email
            transaction.on_commit(lambda: send_mail(subject, body, None, [address], fail_silently=True))
    return share


@dataclass
class ShareRow:
    share: Share
    status: str
    views: int
    downloads: int
    looks: list[AccessEvent]  # newest first, at most 20


def share_list(*, actor: Actor, limit: int = 100) -> list[ShareRow]:
    """The actor's shares, newest first, with their status and each recorded look (the access
    events the recipient's visits wrote, ``actor_ref`` "share:<id>"). Callers: /sharing/."""
    now = timezone.now()
    shares = list(Share.objects.for_actor(actor).prefetch_related("studies").order_by("-created_at", "-pk")[:limit])
    refs = [f"share:{s.pk}" for s in shares]
    events = AccessEvent.objects.for_actor(actor).filter(actor_ref__in=refs)
    counts = {
        row["actor_ref"]: row
        for row in events.values("actor_ref").annotate(
            views=Count("pk", filter=Q(action="view")), downloads=Count("pk", filter=Q(action="download")))
    }
    looks: dict[str, list[AccessEvent]] = {}
    for event in events.select_related("study").order_by("-occurred_at", "-pk")[: 20 * max(1, len(shares))]:
        bucket = looks.setdefault(event.actor_ref, [])
        if len(bucket) < 20:
            bucket.append(event)
    rows = []
    for share in shares:
        ref = f"share:{share.pk}"
        c = counts.get(ref, {})
        rows.append(ShareRow(share, share.status_at(now), c.get("views", 0), c.get("downloads", 0), looks.get(ref, [])))
    return rows


def shares_for_patient(*, actor: Actor, patient_id: int) -> list[Share]:
    """Every share of a patient, oldest first, for the privacy office's ``list_shares``."""
    return list(Share.objects.for_actor(actor).filter(patient_id=patient_id).prefetch_related("studies").order_by("created_at", "pk"))


# --- The recipient's side --------------------------------------------------------------------


def _active_share(token: str, *, lock: bool = False) -> Share:
    if not token or len(token) > TOKEN_MAX:
        raise ShareRefused
    qs = Share.objects.filter(token_hash=_hash("token", token), revoked_at__isnull=True, expires_at__gt=timezone.now())
    share = (qs.select_for_update() if lock else qs).select_related("patient").first()
    if share is None:
        raise ShareRefused
    return share


@transaction.atomic
def share_unlock(*, token: str, code: str) -> str:
    """The recipient entered the access code: start a visit and email the one-time code to the
    recipient's address (a forwarded link and code alone are not enough). Returns the visit
    secret for the browser's session. ``ShareRefused`` for anything wrong."""
    share = _active_share(token)
    if not constant_time_compare(_hash("code", normalize_code(code)), share.code_hash):
        raise ShareRefused
    secret = secrets.token_urlsafe(32)
    otp = f"{secrets.randbelow(10 ** OTP_DIGITS):0{OTP_DIGITS}d}"
    ShareVisit.objects.create(share=share, secret_hash=_hash("visit", secret),
                                      otp_hash=_hash("otp", f"{secret}:{otp}"), otp_sent_at=timezone.now())
    context = {"site_name": settings.SITE_NAME, "otp": otp, "minutes": int(OTP_VALID.total_seconds() // 60),
               "recipient": share.recipient_name}
    subject = render_to_string("sharing/email/otp_subject.txt", context).strip()
    body = render_to_string("sharing/email/otp_body.txt", context)
    email = share.recipient_email
    transaction.on_commit(lambda: send_mail(subject, body, None, [email], fail_silently=True))
    return secret


def share_verify(*, token: str, secret: str, otp: str) -> None:
    """The recipient entered the emailed one-time code. On success the visit is open; the patient
    is told (an in-portal notice and an email, at most once a day per share). A wrong code counts
    a try (kept: the refusal is raised after the commit); after ``OTP_TRIES`` or ``OTP_VALID``
    the visit is dead (enter the access code again). ``ShareRefused`` for anything wrong."""
    with transaction.atomic():
        share = _active_share(token)
        visit = ShareVisit.objects.select_for_update().filter(share=share, secret_hash=_hash("visit", secret or "")).first()
        now = timezone.now()
        if (visit is None or visit.verified_at is not None or visit.otp_tries >= OTP_TRIES
                or now - visit.otp_sent_at > OTP_VALID):
            raise ShareRefused
        digits = "".join(ch for ch in otp if ch.isdigit())[:OTP_DIGITS]
        right = constant_time_compare(_hash("otp", f"{secret}:{digits}"), visit.otp_hash)
        if right:
            visit.verified_at = now
            visit.save(update_fields=["verified_at"])
            _tell_patient(share, now)
        else:
            visit.otp_tries += 1
            visit.save(update_fields=["otp_tries"])
    if not right:
        raise ShareRefused


def _tell_patient(share: Share, now: dt.datetime) -> None:
    """A notice and an email to the patient when a share is opened: one per share per day."""
    day = timezone.localdate(now)
    subject = f"{share.recipient_name} at {share.recipient_organization} opened the scans you shared"
    notice = notice_add(patient_id=share.patient_id, kind=Notice.Kind.SHARE_OPENED, key=f"share-open:{share.pk}:{day}",
                        subject=subject[:200], link=reverse("sharing-list"))
    user = share.created_by
    if notice is None or user is None or not user.email:
        return
    context = {"site_name": settings.SITE_NAME, "recipient": share.recipient_name,
               "organization": share.recipient_organization, "url": site_url(reverse("sharing-list"))}
    mail_subject = render_to_string("sharing/email/opened_subject.txt", context).strip()
    body = render_to_string("sharing/email/opened_body.txt", context)
    address = user.email
    transaction.on_commit(lambda: send_mail(mail_subject, body, None, [address], fail_silently=True))


@dataclass(frozen=True)
class Recipient:
    actor: Actor
    share: Share


def recipient_get(*, token: str, secret: str | None, ip: str | None = None, user_agent: str = "") -> Recipient:
    """The recipient of a verified visit of an active share, as an ``Actor`` whose reach is the
    share's patient and its studies only. ``ShareRefused`` otherwise (checked on every request,
    so a revoke or the expiry ends an open visit at once)."""
    share = _active_share(token)
    if not secret:
        raise ShareRefused
    visit = ShareVisit.objects.filter(share=share, secret_hash=_hash("visit", secret), verified_at__isnull=False).first()
    if visit is None or timezone.now() - visit.verified_at > VISIT_VALID:
        raise ShareRefused
    actor = Actor(
        kind=Kind.SHARE_RECIPIENT, name=share.recipient_name, organization=share.recipient_organization,
        patient_ids=frozenset({share.patient_id}), share_id=share.pk,
        study_ids=frozenset(share.studies.values_list("pk", flat=True)), ip=ip, user_agent=user_agent,
    )
    return Recipient(actor, share)


@transaction.atomic
def shared_studies_open(*, recipient: Recipient) -> list[Study]:
    """The recipient's landing page: the shared studies (``for_actor`` narrows to them), with the
    patient's name and date of birth for identification. Audited: one ``query`` event (no
    study) with ``{"page": "shared_studies", "studies": n}``."""
    studies = list(study_list(actor=recipient.actor).select_related("patient"))
    access_log.record(actor=recipient.actor, patient=recipient.share.patient, action="query",
                      details={"page": "shared_studies", "studies": len(studies)})
    return studies


class DownloadUnavailable(Exception):  # noqa: N818 - a plain refusal for the recipient
    """The share allows downloads but the archive is not (or no longer) there."""


@dataclass(frozen=True)
class ShareDownload:
    name: str
    size: int
    file: object  # an open binary file; the response closes it


@transaction.atomic
def share_download(*, recipient: Recipient) -> ShareDownload:
    """The recipient downloads the share's encrypted archive (the patient's export of the shared
    studies). ``ShareRefused`` when the share is view-only; ``DownloadUnavailable`` while the
    archive is being prepared or after it expired. Audited: one ``download`` event as the
    recipient (``{"format": "zip", "export": id}``, plus the share's own details). The share is
    the authorization: the export is read through it, and it is the share's own."""
    share = recipient.share
    if not share.allow_download or share.export_id is None:
        raise ShareRefused
    export = ExportRequest.objects.filter(pk=share.export_id, patient_id=share.patient_id).first()
    now = timezone.now()
    if export is None or export.status != ExportRequest.Status.READY or (export.expires_at and export.expires_at <= now):
        raise DownloadUnavailable("The archive is not available: it is still being prepared, or it has expired.")
    try:
        fh = open(archive_path(export), "rb")  # noqa: SIM115 - closed by the response
    except FileNotFoundError as exc:
        raise DownloadUnavailable("The archive is no longer available.") from exc
    studies = list(share.studies.all())
    access_log.record(actor=recipient.actor, patient=share.patient, study=studies[0] if len(studies) == 1 else None,
                      action="download", details={"format": "zip", "export": export.pk})
    return ShareDownload(archive_path(export).name, archive_path(export).stat().st_size, fh)


def visits_purge(*, now: dt.datetime | None = None) -> int:
    """Delete visits no browser can use any more: a one-time code never entered past
    ``OTP_VALID``, an open visit past ``VISIT_VALID``, any visit of a share revoked or expired.
    Returns how many. Callers: the ``sharing.reconcile`` task every minute. Records nothing (the
    looks are in the access log; a visit holds only hashes and times)."""
    now = now or timezone.now()
    stale = (
        Q(verified_at__isnull=True, otp_sent_at__lt=now - OTP_VALID)
        | Q(verified_at__lt=now - VISIT_VALID)
        | Q(share__revoked_at__isnull=False)
        | Q(share__expires_at__lte=now)
    )
    deleted, _ = ShareVisit.objects.filter(stale).delete()
    return deleted
