"""``for_actor``: the one rule that narrows a patient-owned table to what an actor may reach.

Every patient-owned model (Study, Series, Instance, AccessEvent, ConsentDecision, ExportRequest,
Flag, ...) uses a queryset made by ``patient_owned(path)``, where ``path`` leads from the model to
its ``imaging.Patient``. Every selector starts from ``Model.objects.for_actor(actor)``, so a record
outside the actor's reach is never loaded and answers 404, exactly like a missing one.
"""

from __future__ import annotations

from typing import ClassVar, Self

from django.db import models

from core.actor import Actor

# What an actor narrowed to some studies (a share recipient, ``Actor.study_ids``) may read, and
# the path from each table to its study: the viewer's tables only. Every other patient-owned
# table (the access log, consents, exports, ...) is empty to it (docs/security.md §27).
STUDY_KEYS = {"imaging.Study": "pk", "imaging.Series": "study_id", "imaging.Instance": "series__study_id"}


class PatientOwnedQuerySet(models.QuerySet):
    # Lookup from the model to its patient's primary key, e.g. "patient_id" or
    # "series__study__patient_id"; "pk" for the Patient table itself.
    patient_key: ClassVar[str] = "patient_id"

    def for_actor(self, actor: Actor) -> Self:
        """The rows of the patients ``actor`` may reach; none for anyone else."""
        if actor.study_ids is not None:
            key = STUDY_KEYS.get(self.model._meta.label)
            if key is None or not actor.study_ids or len(actor.patient_ids) != 1:
                return self.none()
            return self.filter(**{self.patient_key: next(iter(actor.patient_ids)), f"{key}__in": sorted(actor.study_ids)})
        if actor.all_patients:
            return self.all()
        ids = sorted(actor.patient_ids)
        if not ids:
            return self.none()
        # One id (a patient, an officer on one flag) as a plain equality: PostgreSQL then walks
        # the (patient, occurred_at, id) index of the access log and stops after one page.
        if len(ids) == 1:
            return self.filter(**{self.patient_key: ids[0]})
        return self.filter(**{f"{self.patient_key}__in": ids})


def patient_owned(patient_key: str, base: type[PatientOwnedQuerySet] = PatientOwnedQuerySet) -> type[PatientOwnedQuerySet]:
    """A ``PatientOwnedQuerySet`` subclass whose rows reach their patient through ``patient_key``."""
    return type(f"PatientOwnedQuerySet[{patient_key}]", (base,), {"patient_key": patient_key, "__module__": __name__})
