"""``manage.py list_shares --mrn MRN``: a patient's shares, for the privacy office: the pushes to
partner hospitals and the share links for doctors (with each link's status and how often it was
looked at). ``list_shares --revoke ID --reason "..."`` ends a share link at once.

Reads through the sharing selectors and ``sharing.links`` as the system actor; the command picks
the patient. Listing records nothing: it lists who the patient's data was sent or shown to (no
clinical data), and each send and look is in the patient's log already. ``--kind push`` stops a
push that is still queued or sending (the patient is emailed why); a sent push cannot be taken
back: the partner holds the images (the office asks the partner to delete them).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from audit.models import AccessEvent
from core.actor import Actor
from imaging.models import Patient
from sharing import links, services
from sharing.models import Push, Share
from sharing.selectors import pushes_for_patient


class Command(BaseCommand):
    help = "List a patient's shares (pushes to partner hospitals, links for doctors), or revoke a link."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--mrn", help="The patient's medical record number.")
        parser.add_argument("--issuer", default=None, help="The MRN's issuer, when several patients share an MRN.")
        parser.add_argument("--revoke", type=int, metavar="ID", help="End the share link (or, with --kind push, stop the push) with this id.")
        parser.add_argument("--kind", choices=["link", "push"], default="link", help="What --revoke names (default: a link).")
        parser.add_argument("--reason", default="", help="Why the office revokes it (required with --revoke; shown to no recipient).")

    def handle(self, *args, mrn: str | None, issuer: str | None, revoke: int | None, kind: str, reason: str, **options) -> None:
        actor = Actor.system("list_shares")
        if revoke is not None:
            self._revoke(actor, revoke, kind, reason.strip())
            return
        if not mrn:
            raise CommandError("Give --mrn to list, or --revoke ID --reason to revoke.")
        patient = self._patient(mrn, issuer)
        pushes = list(pushes_for_patient(actor=actor, patient=patient))
        shares = links.shares_for_patient(actor=actor, patient_id=patient.pk)
        if not pushes and not shares:
            self.stdout.write("No shares.")
            return
        self.stdout.write("id\tkind\tcreated\tto\tstatus\tprogress\tstudies\tnote")
        for push in pushes:
            studies = ",".join(s.study_uid for s in push.studies.all())
            self.stdout.write(
                f"{push.pk}\tpush\t{push.created_at:%Y-%m-%d %H:%M}Z\t{push.partner.name}\t{push.status}\t"
                f"{push.sent}/{push.total}\t{studies}\t{push.error}"
            )
        now = timezone.now()
        for share in shares:
            studies = ",".join(s.study_uid for s in share.studies.all())
            events = AccessEvent.objects.for_actor(actor).filter(patient_id=patient.pk, actor_ref=f"share:{share.pk}")
            views, downloads = events.filter(action="view").count(), events.filter(action="download").count()
            status = share.status_at(now)
            note = f"until {share.expires_at:%Y-%m-%d %H:%M}Z" if status != "revoked" else (
                f"revoked by {share.revoked_by} {share.revoked_at:%Y-%m-%d %H:%M}Z" + (f": {share.revoked_reason}" if share.revoked_reason else ""))
            self.stdout.write(
                f"{share.pk}\tlink\t{share.created_at:%Y-%m-%d %H:%M}Z\t{share.recipient_name} at {share.recipient_organization} "
                f"<{share.recipient_email}>\t{status}\t{views} views, {downloads} downloads\t{studies}\t{note}"
            )

    def _patient(self, mrn: str, issuer: str | None) -> Patient:
        patients = Patient.objects.filter(mrn=mrn)
        if issuer:
            patients = patients.filter(issuer=issuer)
        found = list(patients[:2])
        if not found:
            raise CommandError("No patient has this MRN.")
        if len(found) > 1:
            raise CommandError("Several patients have this MRN: give --issuer.")
        return found[0]

    def _revoke(self, actor: Actor, share_id: int, kind: str, reason: str) -> None:
        if not reason:
            raise CommandError("Give --reason: the patient is shown that the privacy office ended it, and why.")
        if kind == "push":
            try:
                push = services.push_stop(actor=actor, push_id=share_id, reason=reason)
            except Push.DoesNotExist:
                raise CommandError("No push has this id.") from None
            except ValidationError as exc:
                raise CommandError(exc.messages[0]) from None
            self.stdout.write(f"Push {push.pk} stopped; the patient is emailed why.")
            return
        try:
            share = links.share_revoke(actor=actor, share_id=share_id, reason=reason)
        except Share.DoesNotExist:
            raise CommandError("No share link has this id.") from None
        self.stdout.write(f"Share link {share.pk} revoked ({share.revoked_at:%Y-%m-%d %H:%M}Z).")
