"""Property-based tests of the export request form with malformed input.

Properties: any posted body is answered without a server error; a refused request shows its
errors and creates no export; an accepted one creates exactly one export of the patient's own
studies (the ones ticked, or all), whatever else was posted (docs/security.md §10); every valid choice
is accepted. Examples run in rolled-back transactions, so no job reaches the broker.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from exports.forms import ExportRequestForm
from exports.models import ExportRequest
from tests.conftest import reauthenticate
from tests.consent.conftest import make_study
from tests.hypothesis_profiles import error_texts, example_scope, form_data, text

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(patient, other_patient, patient_client):
    own = [make_study(patient.patient), make_study(patient.patient)]
    other = make_study(other_patient.patient)
    reauthenticate(patient_client)  # once, outside the examples' rolled-back transactions
    return patient_client, patient.patient, own, other


def _study_ids(own, other) -> st.SearchStrategy[list[str]]:
    ids = [str(s.pk) for s in [*own, other]]
    return st.lists(st.one_of(st.sampled_from(ids), text()), max_size=3)


@given(data=st.data())
@example(data=None)
def test_any_request_is_accepted_for_own_studies_or_refused_with_reasons(setup, data):
    client, record, own, other = setup
    if data is None:
        body = {"scope": "selected", "studies": [str(other.pk)], "kind": "original", "patient": str(other.patient_id)}
    else:
        body = data.draw(form_data(["scope", "studies", "kind"]))
        if data.draw(st.booleans()):
            body.update(scope=data.draw(st.sampled_from(["all", "selected"])), kind=data.draw(st.sampled_from(["original", "deidentified"])))
            body["studies"] = data.draw(_study_ids(own, other))
    with example_scope():
        before = ExportRequest.objects.count()
        response = client.post("/exports/new/", body)
        assert response.status_code == (200 if "passphrase" in response.context else 400), response.status_code
        form = response.context.get("form")
        if "passphrase" in response.context:
            assert ExportRequest.objects.count() == before + 1
            export = ExportRequest.objects.latest("pk")
            assert export.patient == record and export.status == "queued"
            assert {s.pk for s in export.studies.all()} <= {s.pk for s in own}
        else:
            assert ExportRequest.objects.count() == before, "a refused request created an export"
            assert isinstance(form, ExportRequestForm)
            if body:
                html = response.content.decode()
                assert form.errors, "refused without a reason"
                for error in error_texts(form):
                    assert error in html, error


@given(scope=st.sampled_from(["all", "selected"]), kind=st.sampled_from(["original", "deidentified"]),
       ticked=st.lists(st.sampled_from([0, 1]), min_size=1, max_size=2, unique=True))
def test_every_valid_choice_is_accepted(setup, scope, kind, ticked):
    client, record, own, _ = setup
    body = {"scope": scope, "kind": kind, "studies": [str(own[i].pk) for i in ticked]}
    with example_scope():
        response = client.post("/exports/new/", body)
        assert "passphrase" in response.context, response.content[:500]
        export = ExportRequest.objects.latest("pk")
        expected = {s.pk for s in own} if scope == "all" else {own[i].pk for i in ticked}
        assert {s.pk for s in export.studies.all()} == expected
        assert export.deidentify == (kind == "deidentified")
