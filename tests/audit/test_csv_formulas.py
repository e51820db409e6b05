"""Issue 17, found 5: the access-log CSV defused only a field's first character and wrote fields
unquoted, so ``;=cmd|' /C calc'!A0;`` became a formula where the separator is ``;``."""

from __future__ import annotations

import pytest

from tests.audit.conftest import clinician_view
from tests.conftest import reauthenticate
from tests.core.test_spreadsheet import FORMULA_START, SEMICOLON_PAYLOAD, cells_a_spreadsheet_could_see

CSV = "/access-log/download.csv"


@pytest.mark.django_db
def test_the_downloaded_log_has_no_formula_cell_whatever_the_separator(patient_client, record):
    clinician_view(record, actor_name=SEMICOLON_PAYLOAD, organization="Mercy;+Hospital")
    reauthenticate(patient_client)
    response = patient_client.get(CSV)
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    assert all(line.startswith('"') and line.endswith('"') for line in text.splitlines())
    bad = [c for c in cells_a_spreadsheet_could_see(text) if c.startswith(FORMULA_START)]
    assert bad == []
