"""The study page's database work does not grow with the study's series (issue 18, "Pages":
the study page's throughput), and that number is pinned.

The page once read the study's series three times (labels, head volumes, cards) and its OCR
rows through a server-side cursor (DECLARE, FETCH, CLOSE); now once and with a plain fetch.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from pydicom.uid import generate_uid

from tests.imaging.test_views import import_for, write_ct_series

# Per request: user and device (2); the actor's patient (1) and any proxy grants (1); the study
# (1); undecodable images and series with counts (2); the header report's instances and OCR rows
# (2); the access event (2: head, then event + count); integrity counts and open alerts (2); the
# service's savepoint and its release (2); the notification bell (1). Was 21 before issue 18.
MAX_QUERIES = 16


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
