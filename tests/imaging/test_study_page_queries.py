"""The study page's database work does not grow with the study's series (issue 18, "Pages":
the study page's throughput), and that number is pinned.

The page once read the study's series three times (labels, head volumes, cards) and its OCR
rows through a server-side cursor (DECLARE, FETCH, CLOSE); now once and with a plain fetch. Its
instances were then still read five times (undecodable images, the series' counts, the header
report's files, the OCR rows, the integrity counts), and the open integrity alerts on every view;
now once, and the alerts only when a series has one (``imaging.selectors._study_read``).
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pydicom.uid import generate_uid

from imaging.models import Instance, IntegrityAlert
from tests.imaging.test_views import import_for, write_ct_series

# Per request: user and device (2); the actor's patient (1) and any proxy grants (1); the study
# (1); its series, each with whether it has an open integrity alert (1); their instances with
# their OCR rows (1); the access event (2: head, then event + count); the service's savepoint and
# its release (2); the notification bell (1). Was 21 before issue 18, then 16.
MAX_QUERIES = 12


def _study_with_series(folder: Path, n: int) -> list[Path]:
    study_uid = generate_uid()
    paths: list[Path] = []
    for i in range(n):
        series_uid = generate_uid()
        for path in write_ct_series(folder / f"s{i}", slices=3):
            ds = pydicom.dcmread(path)
            ds.StudyInstanceUID = study_uid
            ds.SeriesNumber = i + 1
            ds.SeriesInstanceUID = series_uid
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths


def _queries(client: Client, study_id: int) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/studies/{study_id}/")
    assert response.status_code == 200
    return [q["sql"] for q in queries.captured_queries]


@pytest.mark.django_db
def test_the_study_page_reads_each_thing_once_however_many_series(patient_client, patient, tmp_path):
    one = import_for(patient, _study_with_series(tmp_path / "one", 1))
    five = import_for(patient, _study_with_series(tmp_path / "five", 5))
    _queries(patient_client, one.pk)  # the header report's cache is filled on a first view

    small, large = _queries(patient_client, one.pk), _queries(patient_client, five.pk)

    assert len(large) == len(small), "\n".join(large)
    assert len(small) <= MAX_QUERIES, "\n".join(small)
    assert not any(q.lstrip().upper().startswith(("DECLARE", "FETCH")) for q in small), "no server-side cursor"
    series_reads = [q for q in large if 'FROM "imaging_series"' in q and "imaging_study" not in q.split("FROM")[0]]
    assert len(series_reads) <= 1, "\n".join(series_reads)


@pytest.mark.django_db
def test_open_integrity_alerts_are_read_only_for_a_study_that_has_one(patient_client, patient, tmp_path):
    """The alerts are read when some series has an open one, whatever the files' last check said
    (a conflicting re-send leaves the stored file verified), and a resolved alert is not shown."""
    study = import_for(patient, _study_with_series(tmp_path / "two", 2))
    Instance.objects.filter(series__study=study).update(verified_ok=True, last_verified_at=timezone.now())
    _queries(patient_client, study.pk)  # the first view fills the header report's cache
    quiet = _queries(patient_client, study.pk)
    assert not any(q.startswith('SELECT "imaging_integrityalert"') for q in quiet), "\n".join(quiet)

    second = Instance.objects.filter(series__study=study).order_by("series__number", "number").last()
    IntegrityAlert.objects.create(instance=second, kind=IntegrityAlert.Kind.CONFLICT, expected_sha256=second.sha256,
                                  found_sha256="1" * 64, resolved_at=timezone.now())
    assert len(_queries(patient_client, study.pk)) == len(quiet)
    html = patient_client.get(f"/studies/{study.pk}/").content.decode()
    assert 'role="alert"' not in html and "All 6 files verified" in html

    IntegrityAlert.objects.create(instance=second, kind=IntegrityAlert.Kind.CONFLICT, expected_sha256=second.sha256,
                                  found_sha256="2" * 64)
    assert len(_queries(patient_client, study.pk)) == len(quiet) + 1
    html = patient_client.get(f"/studies/{study.pk}/").content.decode()
    assert 'role="alert"' in html and "A different file arrived with the same identifier" in html
    assert "All 6 files verified" not in html
