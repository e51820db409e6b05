"""Emails telling patients that their scans were accessed in a way they asked to hear about.

Sent for events other systems report (API and imports), never for the patient's own portal
pages. The email says what kind of access happened and asks the patient to sign in; it names no
organisation, study or clinical detail (anyone who can read the mailbox learns nothing medical).
"""

from __future__ import annotations

import logging
from collections import defaultdict

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext

from audit.models import AccessEvent, NotificationPreference, NotificationSent
from audit.selectors import AI_RESEARCH_ACTORS, AI_RESEARCH_PURPOSES
from core.actor import Actor
from core.links import site_url
from notices.models import Notice
from notices.services import notice_add

log = logging.getLogger(__name__)

KINDS = ("new_organization", "ai_or_research", "emergency", "downloads")
# Ids per task message: small messages, and one slow batch does not hold up the rest.
CHUNK = 200


def preference_for(user) -> NotificationPreference:
    """The user's preferences, or the unsaved defaults when they never changed them."""
    return NotificationPreference.objects.filter(user=user).first() or NotificationPreference(user=user)


@transaction.atomic
def notification_preference_update(*, actor: Actor, new_organization: bool, ai_or_research: bool, emergency: bool,
                                   downloads: bool) -> NotificationPreference:
    """Save the patient's own choices. Callers: the preferences page. Patients only (the emails
    are about their own record); anyone else raises ``PermissionDenied``. Not audited: it changes
    no patient data, only which emails the account receives."""
    if actor.patient_id is None or actor.user_id is None:
        raise PermissionDenied("Only a patient chooses which emails they receive.")
    pref, _created = NotificationPreference.objects.select_for_update().get_or_create(user_id=actor.user_id)
    pref.new_organization, pref.ai_or_research = new_organization, ai_or_research
    pref.emergency, pref.downloads = emergency, downloads
    pref.updated_at = timezone.now()
    pref.full_clean()
    pref.save()
    return pref


def kinds_of(event: AccessEvent) -> list[str]:
    """Which notification kinds an event falls under."""
    kinds = []
    if event.organization and not AccessEvent.objects.filter(
        patient_id=event.patient_id, organization=event.organization, pk__lt=event.pk
    ).exists():
        kinds.append("new_organization")
    if event.actor_type in AI_RESEARCH_ACTORS or event.purpose in AI_RESEARCH_PURPOSES:
        kinds.append("ai_or_research")
    if event.purpose == AccessEvent.Purpose.EMERGENCY:
        kinds.append("emergency")
    if event.action in (AccessEvent.Action.DOWNLOAD, AccessEvent.Action.EXPORT):
        kinds.append("downloads")
    return kinds


def notify_events(event_ids: list[int]) -> int:
    """Email each affected patient once about the events in ``event_ids`` that match their
    preferences; returns the number of emails sent. Idempotent: an event already notified
    (a ``NotificationSent`` row) is skipped, so a retried task sends nothing twice.
    Callers: the ``audit.notify_access_events`` task."""
    events = (
        AccessEvent.objects.filter(pk__in=event_ids, patient__user__isnull=False)
        .exclude(source=AccessEvent.Source.PORTAL)
        .select_related("patient__user")
        .order_by("pk")
    )
    per_user: dict[int, list[tuple[AccessEvent, list[str]]]] = defaultdict(list)
    users = {}
    prefs: dict[int, NotificationPreference] = {}
    for event in events:
        user = event.patient.user
        if not user.is_active:
            continue
        if user.pk not in prefs:
            prefs[user.pk] = preference_for(user)
        kinds = kinds_of(event)
        if "new_organization" in kinds:
            _notice_new_organization(event)
        wanted = [k for k in kinds if getattr(prefs[user.pk], k)]
        if wanted:
            users[user.pk] = user
            per_user[user.pk].append((event, wanted))
    sent = 0
    for user_id, items in per_user.items():
        with transaction.atomic():
            fresh = []
            for event, kinds in items:
                _row, created = NotificationSent.objects.get_or_create(event=event, defaults={"user_id": user_id, "kinds": kinds})
                if created:
                    fresh.append(kinds)
            if not fresh:
                continue
            found = {k for kinds in fresh for k in kinds}
            _send(users[user_id], [k for k in KINDS if k in found], len(fresh))
            sent += 1
    return sent


def _notice_new_organization(event: AccessEvent) -> None:
    """The notification centre's notice that an organisation accessed the scans for the first
    time, whatever the email preferences (they choose emails, not the portal's notices). Once per
    event (a retried task adds nothing); like the email, it names no organisation: the access log
    it links to does, to the signed-in patient."""
    notice_add(
        patient_id=event.patient_id, kind=Notice.Kind.NEW_ORGANIZATION, key=f"access:{event.pk}",
        subject=gettext("An organisation accessed your scans for the first time"),
        body=gettext("See who it was and why in your access log."),
        link=reverse("audit-log"),
    )


def _send(user, kinds: list[str], count: int) -> None:
    context = {
        "kinds": kinds,
        "count": count,
        "log_url": site_url(reverse("audit-log")),
        "preferences_url": site_url(reverse("audit-preferences")),
        "SITE_NAME": settings.SITE_NAME,
        "HOSPITAL_NAME": getattr(settings, "HOSPITAL_NAME", ""),
    }
    subject = render_to_string("audit/email/activity_subject.txt", context).strip()
    message = EmailMultiAlternatives(
        subject, render_to_string("audit/email/activity.txt", context), to=[user.email]
    )
    message.attach_alternative(render_to_string("audit/email/activity.html", context), "text/html")
    message.send()


def notify_on_commit(event_ids: list[int]) -> None:
    """Queue the notification task for these events once the current transaction commits."""

    def enqueue() -> None:
        from audit.tasks import notify_access_events

        for start in range(0, len(event_ids), CHUNK):
            try:
                notify_access_events.delay(event_ids[start : start + CHUNK])
            except Exception:  # noqa: BLE001 - a broker outage must not fail the API call that already committed
                log.warning("could not queue access notifications for %d events", len(event_ids[start : start + CHUNK]))

    transaction.on_commit(enqueue)
