"""Helpers for the sharing tests: a real Orthanc as the partner hospital's archive, partners
pointing at it, and pushes of studies imported through the real ingest."""

from __future__ import annotations

import pytest

from sharing.models import Partner
from tests.imaging.orthanc import Orthanc, available, free_port

PARTNER_NAME = "Northbrook Royal Infirmary"


@pytest.fixture(scope="session")
def partner_orthanc(tmp_path_factory):
    """A second Orthanc, apart from the hospital's PACS of tests/imaging: the other hospital."""
    reason = available()
    if reason:
        pytest.fail(f"{reason}; `make test` installs it")
    server = Orthanc(tmp_path_factory.mktemp("partner-orthanc")).start()
    yield server
    server.stop()


@pytest.fixture
def partner_archive(partner_orthanc) -> Orthanc:
    partner_orthanc.clear()
    return partner_orthanc


@pytest.fixture
def partner(db, partner_archive) -> Partner:
    return Partner.objects.create(name=PARTNER_NAME, stow_url=partner_archive.dicomweb_url)


@pytest.fixture
def partner_down(db) -> Partner:
    """A partner whose archive does not answer: nothing listens on its port."""
    return Partner.objects.create(name="Downriver General", stow_url=f"http://127.0.0.1:{free_port()}/dicom-web")
