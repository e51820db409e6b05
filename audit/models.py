"""The access log: one append-only, hash-chained row per access to a patient's data.

Rows are written only by ``audit.services.record_access`` (which sets ``seq``, ``prev_hash`` and
``hash``); the database rejects UPDATE and DELETE on the table (migration 0002), and
``manage.py verify_audit`` recomputes every chain.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.querysets import patient_owned

# prev_hash of the first event in every patient's chain.
GENESIS_HASH = "0" * 64


class AccessEvent(models.Model):
    """Who touched which patient's data, when, why and how it went."""

    class ActorType(models.TextChoices):
        PATIENT = "patient", _("Patient")
        CLINICIAN = "clinician", _("Clinician")
        STAFF = "staff", _("Hospital staff")
        PRIVACY_OFFICE = "privacy_office", _("Privacy office")
        AI_VENDOR = "ai_vendor", _("AI vendor")
        RESEARCHER = "researcher", _("Researcher")
        SERVICE = "service", _("Connected system")
        SYSTEM = "system", _("Lightbox")
        # A parent, guardian or caregiver acting for the patient under a proxy grant (proxies/).
        PROXY = "proxy", _("Family member or carer")

    class Purpose(models.TextChoices):
        # Modelled on HL7 v3 PurposeOfUse (TREAT, HPAYMT, HOPERAT, HRESCH, ETREAT, HLEGAL, ...).
        TREATMENT = "treatment", _("Treatment")
        PAYMENT = "payment", _("Payment")
        OPERATIONS = "operations", _("Hospital operations")
        RESEARCH = "research", _("Research")
        AI_TRAINING = "ai_training", _("AI training")
        AI_INFERENCE = "ai_inference", _("AI analysis")
        PATIENT_REQUEST = "patient_request", _("Your request")
        PRIVACY_INVESTIGATION = "privacy_investigation", _("Privacy investigation")
        EMERGENCY = "emergency", _("Emergency care")
        LEGAL = "legal", _("Legal requirement")

    class Action(models.TextChoices):
        VIEW = "view", _("Viewed")
        DOWNLOAD = "download", _("Downloaded")
        EXPORT = "export", _("Exported")
        QUERY = "query", _("Searched")
        SHARE = "share", _("Shared")
        DEIDENTIFY = "deidentify", _("De-identified")
        CONSENT_CHECK = "consent_check", _("Checked consent")
        INGEST = "ingest", _("Received")
        MODIFY = "modify", _("Changed")
        DELETE = "delete", _("Deleted")

    class Outcome(models.TextChoices):
        SUCCESS = "success", _("Success")
        DENIED = "denied", _("Denied")
        FAILURE = "failure", _("Failed")

    class Source(models.TextChoices):
        PORTAL = "portal", _("Lightbox portal")
        API = "api", _("Connected system")
        IMPORT = "import", _("Import")

    occurred_at = models.DateTimeField(default=timezone.now, help_text="When the access happened (the caller's clock).")
    recorded_at = models.DateTimeField(default=timezone.now, help_text="When Lightbox wrote this row.")
    # No single-column index: the (patient, ...) indexes below serve every lookup by patient.
    patient = models.ForeignKey(
        "imaging.Patient", on_delete=models.PROTECT, related_name="access_events", db_index=False
    )
    study = models.ForeignKey(
        "imaging.Study", null=True, blank=True, on_delete=models.PROTECT, related_name="access_events"
    )
    actor_type = models.CharField(max_length=32, choices=ActorType.choices)
    actor_name = models.CharField(max_length=200, blank=True)
    actor_ref = models.CharField(max_length=200, blank=True, help_text="Stable id of the actor in its own system.")
    organization = models.CharField(max_length=200, blank=True)
    role = models.CharField(max_length=100, blank=True)
    purpose = models.CharField(max_length=32, choices=Purpose.choices)
    action = models.CharField(max_length=32, choices=Action.choices)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.SUCCESS)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.PORTAL)
    # NULL, not "", for "no id": the idempotency constraint applies only to events that have one.
    source_event_id = models.CharField(  # noqa: DJ001
        max_length=200, null=True, blank=True, help_text="The sender's id for this event; makes re-sends idempotent."
    )
    ip = models.GenericIPAddressField("IP address", null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    details = models.JSONField(default=dict, blank=True)
    seq = models.PositiveBigIntegerField(help_text="Position in the patient's chain, from 1, without gaps.")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = patient_owned("patient_id").as_manager()

    class Meta:
        ordering = ["-occurred_at", "-pk"]
        constraints = [
            # Idempotency for external senders: a re-sent event hits this instead of duplicating.
            models.UniqueConstraint(
                fields=["source", "source_event_id"],
                condition=Q(source_event_id__isnull=False),
                name="accessevent_source_event_unique",
            ),
            # Also the (patient, seq) index; makes a forked chain impossible, not just detectable.
            models.UniqueConstraint(fields=["patient", "seq"], name="accessevent_patient_seq_unique"),
        ]
        indexes = [
            # Keyset pagination of a patient's log: (occurred_at, id) descending, so a page's
            # cost depends on the page size, not on how long the history is.
            models.Index(fields=["patient", "-occurred_at", "-id"], name="accessevent_patient_time_id"),
            # "First access by this organisation" badges and the organisation filter.
            models.Index(fields=["patient", "organization", "occurred_at", "id"], name="accessevent_patient_org"),
            # The log's filters by who, why and what (issue 18): each is an equality after the
            # patient, so a filter that matches little of a long history reads only what it
            # matches, newest first, instead of walking the whole history (or the table). The
            # actor-type index also serves the patient's own actions ("your last visit"), which a
            # partial index on actor_type='patient' served before.
            models.Index(fields=["patient", "actor_type", "-occurred_at", "-id"], name="accessevent_patient_actor"),
            models.Index(fields=["patient", "purpose", "-occurred_at", "-id"], name="accessevent_patient_purpose"),
            models.Index(fields=["patient", "action", "-occurred_at", "-id"], name="accessevent_patient_action"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} by {self.actor_name or self.get_actor_type_display()} ({self.occurred_at:%Y-%m-%d %H:%M})"


class ChainHead(models.Model):
    """The tip of one patient's chain. Writers lock this row, so appends for a patient are serial."""

    patient = models.OneToOneField(
        "imaging.Patient", primary_key=True, on_delete=models.PROTECT, related_name="audit_chain_head"
    )
    seq = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self) -> str:
        return f"Chain head {self.patient_id} @ {self.seq}"


class PendingAccessEvent(models.Model):
    """A portal event waiting for its patient's chain head (issue 18: pages never wait on ingest).

    ``record_access`` chains a portal event at once when it can take the patient's chain head
    without waiting. When another writer holds the head (an ingest group, another page), waiting
    would make the page as slow as that writer, so the event is written here instead, in the
    page's own transaction (so the action and its record still commit together, docs/security.md
    §13), and the next writer to hold the head chains it before its own events: a page, an ingest
    group, or the ``audit.chain_pending`` beat task within ``AUDIT_CHAIN_PENDING_SECONDS``. Rows
    are deleted as they are chained, in the same transaction; ``verify_audit`` reports any left.

    ``fields`` holds the event as ``build_event`` made it (attribute name to JSON value, times as
    ISO 8601), without the id, chain position and hashes, which chaining sets.
    """

    patient = models.ForeignKey("imaging.Patient", on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    fields = models.JSONField()

    objects = patient_owned("patient_id").as_manager()

    def __str__(self) -> str:
        return f"Pending event {self.pk} of patient {self.patient_id}"


class MonthlyAccessCount(models.Model):
    """How many events a patient's log holds per month, accessor type, organisation and purpose.

    Maintained by ``record_access`` in the same transaction as the event (under the chain-head
    lock, so the increment never races), it lets the access-log summary and timeline read a few
    dozen rows instead of counting a history that only grows.
    """

    patient = models.ForeignKey("imaging.Patient", on_delete=models.PROTECT, related_name="+", db_index=False)
    month = models.DateField(help_text="First day of the month (UTC) of occurred_at.")
    actor_type = models.CharField(max_length=32, choices=AccessEvent.ActorType.choices)
    organization = models.CharField(max_length=200, blank=True)
    purpose = models.CharField(max_length=32, choices=AccessEvent.Purpose.choices)
    count = models.PositiveBigIntegerField(default=0)

    objects = patient_owned("patient_id").as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "month", "actor_type", "organization", "purpose"], name="monthlyaccesscount_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.patient_id} {self.month:%Y-%m} {self.actor_type} {self.count}"


class NotificationPreference(models.Model):
    """Which kinds of access a patient wants an email about. Absent row = the defaults below."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="access_notification_preference")
    # The two uses a patient is least likely to expect are on by default.
    new_organization = models.BooleanField(_("A new organisation accesses my scans"), default=True)
    ai_or_research = models.BooleanField(_("An AI vendor or researcher uses my scans"), default=True)
    emergency = models.BooleanField(_("Someone uses emergency access"), default=False)
    downloads = models.BooleanField(_("My data is downloaded or exported"), default=False)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Notification preferences of user {self.user_id}"


class NotificationSent(models.Model):
    """One row per event a patient was emailed about: makes the notification task idempotent."""

    event = models.OneToOneField(AccessEvent, on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kinds = models.JSONField(default=list)
    sent_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Notification for event {self.event_id}"


class AuditCheckpoint(models.Model):
    """A signed checkpoint of the whole access log (audit/checkpoints.py). Append-only.

    ``statement`` is the exact canonical JSON that was signed (Ed25519, core.signing). Format 2
    carries the Merkle tree's size and root over every event (``AuditLeaf``), the SHA-256 of the
    previous checkpoint's statement, and the SHA-256 of ``heads`` ({patient id: [seq, hash]} of
    the chains that changed since the previous checkpoint). Format 1 (the daily checkpoints made
    before) carried every chain head and no tree. Whoever holds an exported copy can later check
    that each chain still passes through the hash it had at that moment, so history before the
    checkpoint cannot be rewritten unnoticed, even by a database owner.
    """

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    chains = models.PositiveBigIntegerField()
    events = models.PositiveBigIntegerField()
    heads = models.JSONField()
    statement = models.TextField()
    signature = models.CharField(max_length=128, help_text="Ed25519 signature of the statement, hex.")
    # Format 2 (audit/checkpoints.py): the Merkle tree over the log and the chain of checkpoints.
    # Copies of what the signed statement says, for queries; null on the format-1 rows made before.
    tree_size = models.PositiveBigIntegerField(null=True, blank=True)
    root = models.CharField(max_length=64, blank=True)
    previous = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the previous checkpoint's statement.")
    # The tree's right edge at tree_size (one hash per set bit), so the next checkpoint hashes only new leaves.
    edge = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"Checkpoint {self.created_at:%Y-%m-%d %H:%M} ({self.chains} chains)"


class AuditLeaf(models.Model):
    """The access log as one list, in the order checkpoints took the events in: leaf ``index`` of
    the Merkle tree (audit/merkle.py) is this event's chain hash.

    The order is given here, not by the event's id: a transaction that commits late may hold a
    smaller id than events already covered, and the tree can only grow at its end. Written only
    by ``checkpoint_create``; append-only in the database (audit/triggers.py).
    """

    index = models.PositiveBigIntegerField(primary_key=True)
    event = models.OneToOneField(AccessEvent, on_delete=models.PROTECT, related_name="+")
    # Copied from the event so a patient's newest covered entry is one index lookup.
    patient = models.ForeignKey("imaging.Patient", on_delete=models.PROTECT, related_name="+", db_index=False)
    seq = models.PositiveBigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["patient", "-index"], name="auditleaf_patient_index")]

    def __str__(self) -> str:
        return f"Leaf {self.index}: patient {self.patient_id} event {self.seq}"


class AuditTreeTile(models.Model):
    """The root of each complete run of ``TILE_SIZE`` leaves (a perfect subtree), kept so that a
    proof in a tree of a million leaves reads a few thousand stored hashes, not every leaf.
    A cache: ``verify_audit`` recomputes each from the leaves."""

    TILE_LEVEL = 8
    TILE_SIZE = 1 << TILE_LEVEL

    index = models.PositiveBigIntegerField(primary_key=True)
    hash = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"Tile {self.index}"
