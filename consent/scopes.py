"""What each consent scope means, in the plain words the cards use, and how it maps to the log.

Kept apart from the models so the wording can be reviewed by the privacy office in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from consent.models import Scope

# The access log's purpose vocabulary (HL7 PurposeOfUse-like) has no "commercial" or "teaching":
# both are the hospital's own business use of data, HL7's HOPERAT, so they are logged as
# "operations" with the consent scope kept in the event's details. AI training and research map
# one to one.
AUDIT_PURPOSE = {
    Scope.AI_TRAINING: "ai_training",
    Scope.RESEARCH: "research",
    Scope.COMMERCIAL: "operations",
    Scope.TEACHING: "operations",
}


@dataclass(frozen=True)
class ScopeInfo:
    scope: str
    title: Promise
    means: Promise
    who: Promise
    receives: Promise
    withdrawal: Promise
    cannot_undo: Promise


SCOPES: dict[str, ScopeInfo] = {
    Scope.AI_TRAINING: ScopeInfo(
        Scope.AI_TRAINING,
        _("AI training"),
        _("Your scans help build or improve computer programs (AI) that read medical images, such as a tool that spots signs of pneumonia on chest X-rays."),
        _("Companies that make AI tools for hospitals, under a contract with the hospital."),
        _("De-identified copies: your name, date of birth, ID numbers and the hospital's notes are removed first."),
        _("No new scans of yours are shared after you say no, and companies holding copies are asked to delete them."),
        _("A program already trained with your scans cannot forget them: what it learned stays in it."),
    ),
    Scope.RESEARCH: ScopeInfo(
        Scope.RESEARCH,
        _("Research"),
        _("Your scans may be used in research studies approved by an ethics committee, for example to understand how a disease changes over time."),
        _("University and hospital research teams working with the hospital."),
        _("De-identified copies, unless a study asks you separately for more."),
        _("Your scans are not added to new studies, and ongoing studies stop using them where they can."),
        _("Results already published, or analyses already done, cannot be taken back."),
    ),
    Scope.COMMERCIAL: ScopeInfo(
        Scope.COMMERCIAL,
        _("Commercial licensing"),
        _("The hospital may license collections of scans to companies, for example to test medical equipment or software, and receive a fee."),
        _("Companies that sign a data licence with the hospital."),
        _("De-identified copies only."),
        _("Your scans are left out of new licences from the day you say no."),
        _("Copies already delivered under an existing licence stay with that company until the licence ends."),
    ),
    Scope.TEACHING: ScopeInfo(
        Scope.TEACHING,
        _("Teaching"),
        _("Your scans may be shown to students, doctors and radiographers in training, in lectures, exams and teaching files."),
        _("The hospital's own teaching programmes and partner medical schools."),
        _("De-identified images, with anything that could name you removed."),
        _("Your scans are taken out of teaching files and not used in new teaching material."),
        _("People who already saw your scans in a lecture cannot unsee them."),
    ),
}
