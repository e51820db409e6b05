"""Property-based tests of the imaging inputs a signed-in patient controls: "Verify a copy"
uploads and the viewer's window parameters, with malformed input.

Properties: any set of uploaded files (mutated DICOM from the import fuzz, copies of the
patient's own original with bytes changed, anything at all, under hostile file names) is
answered with a result per file or a form error, never a server error; uploads are never
stored (storage and rows unchanged); a checked upload writes exactly one access event, a
refused one none. Any window parameters give an image or a 400.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import example, given
from hypothesis import strategies as st

from audit.models import AccessEvent
from imaging.dicom import synth
from imaging.forms import VerifyCopyForm
from imaging.models import Instance
from tests.hypothesis_profiles import error_texts, example_scope, text
from tests.imaging.conftest import listing
from tests.imaging.test_fuzz_import import mutated_file, mutation
from tests.imaging.test_views import import_for

pytestmark = pytest.mark.django_db
OUTCOMES = {"identical", "modified", "same_study", "unknown", "not_dicom"}


@pytest.fixture
def original(patient, tmp_path) -> tuple[Instance, bytes]:
    path = synth.write_instance(tmp_path / "own" / "IM0001", patient_id="LBX-PROP", rows=16, cols=16)
    import_for(patient, [path])
    return Instance.objects.get(), path.read_bytes()


@st.composite
def uploads(draw, own: bytes) -> list[tuple[str, bytes]]:
    """1-3 files: the patient's own original, changed or not, mutated samples, or any bytes."""
    files = []
    for _ in range(draw(st.integers(1, 3))):
        data = draw(st.one_of(st.just(own), mutation(own), mutated_file(), st.binary(max_size=300)))
        name = draw(st.one_of(st.sampled_from(["IM0001", "../../x.dcm", "a b.dcm", "DICOMDIR"]), text()))
        files.append((name, data))
    return files


def regressions(own: bytes, sop_uid: str) -> list[tuple[str, bytes]]:
    """Copies of the patient's own file that once gave a server error (found by this test):
    a NUL inside the SOP Instance UID (PostgreSQL refused the lookup) and an unknown VR on it
    (pydicom raised while the upload was read); and a damaged copy of the original (compared)."""
    uid = sop_uid.encode()
    nul = uid[:4] + b"\x00" + uid[5:]
    return [
        ("nul-uid.dcm", own.replace(uid, nul)),
        ("bad-vr.dcm", own.replace(b"\x08\x00\x18\x00UI", b"\x08\x00\x18\x00TI")),
        ("truncated.dcm", own[:-7] + b"\x00" * 7),
    ]


@given(data=st.data())
@example(data=None)
def test_any_upload_is_checked_or_refused_and_never_kept(patient_client, dicom_storage, original, data):
    instance, own = original
    files = regressions(own, instance.sop_uid) if data is None else data.draw(uploads(own))
    try:
        payload = {"files": [SimpleUploadedFile(name, content) for name, content in files]}
    except (ValueError, TypeError, SuspiciousFileOperation):
        return  # not a name a browser can send
    stored = listing(dicom_storage)
    with example_scope():
        events = AccessEvent.objects.count()
        response = patient_client.post("/verify/", payload)
        assert response.status_code in (200, 400), response.status_code
        assert Instance.objects.count() == 1 and listing(dicom_storage) - stored <= {
            p for p in listing(dicom_storage) if p.startswith("renders")}, "an upload was stored"
        if response.status_code == 200 and response.context["results"] is not None:
            results = response.context["results"]
            # Django drops a part whose file name is empty once sanitised (e.g. only control characters).
            assert 1 <= len(results) <= len(files)
            assert {r.outcome for r in results} <= OUTCOMES
            assert AccessEvent.objects.count() == events + 1
        elif "form" not in (response.context or {}):
            # A body Django's multipart parser refuses (a header past its size limit): its 400 page.
            assert response.status_code == 400 and AccessEvent.objects.count() == events
        else:
            form = response.context["form"]
            assert isinstance(form, VerifyCopyForm) and form.errors
            assert AccessEvent.objects.count() == events
            html = response.content.decode()
            for error in error_texts(form):
                assert error in html, error


@given(c=st.one_of(text(), st.floats().map(str)), w=st.one_of(text(), st.floats().map(str)))
@example(c="40", w="400")
@example(c="1e308", w="1e308")
def test_any_window_gives_an_image_or_a_400(patient_client, original, c, w):
    instance, _ = original
    series = instance.series
    url = f"/studies/{series.study_id}/series/{series.pk}/instances/{instance.pk}/frames/0.png"
    with example_scope():
        response = patient_client.get(url, {"c": c, "w": w})
        assert response.status_code in (200, 400), response.status_code
        if response.status_code == 200:
            assert response.content[:8] == b"\x89PNG\r\n\x1a\n"
