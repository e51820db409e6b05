"""The audited reads of the patient's imaging pages: each selects through ``imaging.selectors``
(``for_actor``: another patient's object is a 404, and nothing is recorded) and records one access
event in the same transaction (docs/security.md §13), through ``core.access_log``.

Callers: the imaging views, with ``request.actor``; any other code that shows a study to someone.
The frames and thumbnails a page loads are not audited (``rendering``): one event per study
page, viewer opening and download, never one per frame, or a scroll through a CT would write
hundreds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404

from core import access_log
from core.actor import Actor
from imaging import selectors
from imaging.models import Instance, Series, Study
from imaging.services.rendering import Slice, render_frame, slices_in_order

if TYPE_CHECKING:
    from imaging.dicom import reveal


@dataclass
class OpenedStudy:
    """What the study page shows, all read in the transaction that recorded the view."""

    study: Study
    report: dict[str, Any]
    reveal_groups: list[reveal.Group]
    cards: list[selectors.SeriesCard]
    integrity: selectors.Integrity


@transaction.atomic
def study_open(*, actor: Actor, study_id: int) -> OpenedStudy:
    """The study page: the study, what its files reveal, its series and their integrity.

    Audited: one ``view`` event with ``{"page": "study", "header_report": True}`` (the page shows
    the header values themselves). ``Http404`` for a study outside the actor's reach, with no
    event. An officer must be narrowed first (``actor.investigating``)."""
    study = selectors.study_get(actor=actor, study_id=study_id)
    cards = selectors.series_cards(study)
    report, groups = selectors.header_report_for_study(study, series=[card.series for card in cards])
    access_log.record(actor=actor, patient=study.patient, study=study, action="view",
                      details={"page": "study", "header_report": True})
    return OpenedStudy(study, report, groups, cards, selectors.integrity_for_study(study))


@dataclass
class OpenedSeries:
    series: Series
    slices: list[Slice]  # in display order (rendering.slices_in_order), never empty
    strip: list[Series]  # the study's series with images (selectors.viewer_series_strip)


@transaction.atomic
def series_open(*, actor: Actor, study_id: int, series_id: int) -> OpenedSeries:
    """The viewer: a series' images in display order with what the viewer needs of each, and
    the study's other series with images (the series strip).

    Callers: the viewer page and its series strip (which switches series in place, one call per
    switch). Audited: one ``view`` event with ``{"page": "viewer", "series": <id>}`` per call.
    ``Http404`` (no event) for a series outside the actor's reach or one without images."""
    series = selectors.series_get(actor=actor, study_id=study_id, series_id=series_id)
    slices = slices_in_order(selectors.viewer_instances(series))
    if not slices:
        raise Http404("This series has no images to show.")
    study = series.study
    access_log.record(actor=actor, patient=study.patient, study=study, action="view",
                      details={"page": "viewer", "series": series.pk})
    return OpenedSeries(series, slices, selectors.viewer_series_strip(study))


@dataclass
class OpenedReport:
    study: Study
    reports: list[selectors.StudyReport]  # may be empty: the page says there is none yet


@transaction.atomic
def report_open(*, actor: Actor, study_id: int) -> OpenedReport:
    """The study's radiology reports as a patient reads them (Structured Reports as text, PDFs
    shown inline from ``document_pdf``, which the page embeds and which is not audited again,
    like the viewer's frames).

    Audited: one ``view`` event with ``{"page": "report", "reports": n}``, the same as a study
    page view. ``Http404`` (no event) for a study outside the actor's reach."""
    study = selectors.study_get(actor=actor, study_id=study_id)
    reports = selectors.study_reports(study)
    access_log.record(actor=actor, patient=study.patient, study=study, action="view",
                      details={"page": "report", "reports": len(reports)})
    return OpenedReport(study, reports)


@dataclass
class DownloadedImage:
    instance: Instance
    frame: int
    data: bytes  # PNG


@transaction.atomic
def instance_download(
    *, actor: Actor, study_id: int, series_id: int, instance_id: int, frame: int = 0,
    center: float | None = None, width: float | None = None,
) -> DownloadedImage:
    """One frame of an image as a PNG to keep, at a window (the file's default when none).

    Needs a recent password (docs/security.md §6): raises allauth's ``ReauthenticationRequired``
    otherwise (the view checks first and sends the browser to the password page). ``Http404``
    for an image outside the actor's reach or a frame it does not have; ``RenderError`` for a
    bad window or pixels that cannot be decoded. Audited only once the PNG exists: one
    ``download`` event with ``{"format": "png", "series", "instance", "frame"}``."""
    actor.require_recent_reauthentication()
    instance = selectors.instance_get(actor=actor, study_id=study_id, series_id=series_id, instance_id=instance_id)
    if instance.rows is None or not 0 <= frame < instance.frames:
        raise Http404("No such frame.")
    data = render_frame(instance, frame=frame, center=center, width=width, fmt="png")
    study = instance.series.study
    access_log.record(actor=actor, patient=study.patient, study=study, action="download",
                      details={"format": "png", "series": instance.series_id, "instance": instance.pk, "frame": frame})
    return DownloadedImage(instance, frame, data)


@transaction.atomic
def copies_verify(*, actor: Actor, uploads: Iterable[tuple[str, IO[bytes]]]) -> list[selectors.CopyResult]:
    """Verify a copy: compare files a patient holds with the originals of their own record
    (``selectors.copies_compare``; the uploads are read, never stored).

    Who may call: a patient (``PermissionDenied`` for anyone without a record of their own).
    Audited: one ``query`` event (no study) with ``{"page": "verify_copy", "files": n}`` and a
    count per outcome."""
    patient = selectors.patient_get(actor=actor)
    if patient is None:
        raise PermissionDenied("Only a patient verifies copies of their own scans.")
    results = selectors.copies_compare(actor=actor, uploads=uploads)
    counts: dict[str, int] = {"files": len(results)}
    for result in results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    access_log.record(actor=actor, patient=patient, action="query", details={"page": "verify_copy", **counts})
    return results
