"""The DICOMweb client the PACS sync talks through: dicomweb-client configured from the settings,
with retrieval of an instance's bytes exactly as the PACS stores them and every HTTP failure
turned into ``PacsError`` (a message fit for /healthz, no patient data).

dicomweb-client, requests and pydicom (with numpy and Pillow, about 49 MB) are imported by
``connect``, when a sync actually asks the PACS: /healthz, the patient's home page and every
Celery worker import ``imaging.pacs.sync``, and the export worker must stay under 100 MB
(tests/exports/test_worker.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings

from imaging.pacs.errors import PacsError, PacsNotConfigured


def pacs_configured() -> bool:
    return bool(getattr(settings, "PACS_DICOMWEB_URL", ""))


@contextmanager
def pacs_errors() -> Iterator[None]:
    """HTTP-level failures as PacsError with a message fit for /healthz (no patient data)."""
    import requests  # loaded with the DICOMweb client, when the PACS is asked

    try:
        yield
    except requests.Timeout as exc:
        raise PacsError("The PACS did not answer in time.") from exc
    except requests.ConnectionError as exc:
        raise PacsError("The PACS cannot be reached.") from exc
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise PacsError(f"The PACS answered HTTP {status}.") from exc
    except (requests.RequestException, ValueError) as exc:
        raise PacsError(f"The PACS sent an unusable answer ({type(exc).__name__}).") from exc


class Client:
    """The three DICOMweb calls a sync makes (QIDO-RS studies, WADO-RS metadata, WADO-RS
    instance), each raising ``PacsError`` on failure. Built by :func:`connect`."""

    def __init__(self, api: Any) -> None:
        self._api = api  # a dicomweb_client DICOMwebClient

    def search_studies(self, patient_id: str) -> list[dict[str, Any]]:
        """QIDO-RS: the studies filed under ``patient_id`` (in the DICOM JSON model), with the
        issuer and instance count."""
        with pacs_errors():
            return self._api.search_for_studies(
                search_filters={"PatientID": patient_id},
                fields=["IssuerOfPatientID", "NumberOfStudyRelatedInstances"],
                get_remaining=True,
            )

    def study_metadata(self, study_uid: str) -> list[dict[str, Any]]:
        """WADO-RS: the metadata of every instance of the study."""
        with pacs_errors():
            return self._api.retrieve_study_metadata(study_uid)

    def instance_bytes(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        """WADO-RS: one instance's bytes exactly as the PACS sends them.

        dicomweb-client's ``retrieve_instance`` parses into a pydicom Dataset; re-encoding that
        would not give the archive's bytes, and the integrity promise (byte-identical, SHA-256 at
        ingest) needs them. This reuses the client's own URL building, session, retry and
        multipart decoding.
        """
        from dicomweb_client.web import _Transaction

        api = self._api
        with pacs_errors():
            url = api._get_instances_url(_Transaction.RETRIEVE, study_uid, series_uid, sop_uid)
            # transfer-syntax=*: the stored encoding, not a transcoded Explicit VR Little Endian.
            headers = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
            response = api._http_get(url, headers=headers)
            if response.headers.get("Content-Type", "").startswith("application/dicom"):
                return response.content  # some archives send the single part unwrapped
            parts = list(api._decode_multipart_message(response, stream=False))
        if len(parts) != 1:
            raise PacsError(f"The PACS sent {len(parts)} parts for one instance.")
        return parts[0]


class StoreFailed(PacsError):
    """A STOW-RS store did not go through. ``transient``: the other side could not be reached, did
    not answer in time or answered 5xx/408/429, so trying again later may help; otherwise it
    refused the instance (4xx, or a FailedSOPSequence in its answer) and will refuse it again."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def _store(api: Any, study_uid: str, data: bytes) -> None:
    """STOW-RS of one instance's bytes, as they are (sharing.services pushes with it).

    dicomweb-client's ``store_instances`` takes pydicom Datasets and writes them again with
    ``dcmwrite``, which need not give back the stored bytes (a push must send exactly the file
    the patient has, checked byte for byte at the partner). This reuses the client's own URL
    building, session and multipart encoding with the bytes we hold.
    """
    import requests
    from dicomweb_client.web import _Transaction

    try:
        url = api._get_studies_url(_Transaction.STORE, study_uid)
        answer = api._http_post_multipart_application_dicom(url, [data])
    except requests.Timeout as exc:
        raise StoreFailed("did not answer in time", transient=True) from exc
    except requests.ConnectionError as exc:
        raise StoreFailed("could not be reached", transient=True) from exc
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        transient = status >= 500 or status in (408, 429)
        raise StoreFailed(f"answered HTTP {status or '?'}", transient=transient) from exc
    except (requests.RequestException, ValueError) as exc:
        raise StoreFailed(f"sent an unusable answer ({type(exc).__name__})", transient=False) from exc
    if len(getattr(answer, "FailedSOPSequence", None) or []):
        raise StoreFailed("refused an image", transient=False)


class StowClient:
    """One partner's STOW-RS endpoint (``stow_connect``)."""

    def __init__(self, api: Any) -> None:
        self._api = api

    def store_instance(self, study_uid: str, data: bytes) -> None:
        _store(self._api, study_uid, data)


def stow_connect(url: str, *, username: str = "", password: str = "", timeout: tuple[int, int] = (10, 120)) -> StowClient:
    """A STOW-RS client for another organisation's DICOMweb root ``url`` (HTTP Basic when
    ``username`` is set). No retries inside: the push task retries with its own backoff, so a
    worker is never held by a partner that is down."""
    from dicomweb_client.api import DICOMwebClient
    from dicomweb_client.session_utils import create_session_from_user_pass

    session = create_session_from_user_pass(username, password) if username else None
    api = DICOMwebClient(url.rstrip("/"), session=session, timeout=timeout)
    api.set_http_retry_params(retry=False)
    return StowClient(api)


def connect() -> Client:
    """A client for ``PACS_DICOMWEB_URL`` (with ``PACS_USERNAME``/``PACS_PASSWORD`` when set);
    ``PacsNotConfigured`` when no PACS is configured."""
    if not pacs_configured():
        raise PacsNotConfigured("PACS_DICOMWEB_URL is not set.")
    from dicomweb_client.api import DICOMwebClient
    from dicomweb_client.session_utils import create_session_from_user_pass

    session = None
    if settings.PACS_USERNAME:
        session = create_session_from_user_pass(settings.PACS_USERNAME, settings.PACS_PASSWORD)
    api = DICOMwebClient(settings.PACS_DICOMWEB_URL.rstrip("/"), session=session,
                         timeout=(settings.PACS_CONNECT_TIMEOUT, settings.PACS_READ_TIMEOUT))
    # A couple of quick retries for a busy PACS (429/503); longer outages are the Celery
    # task's job, with its own backoff, so a worker is not held for minutes here.
    api.set_http_retry_params(retry=True, max_attempts=max(getattr(settings, "PACS_HTTP_ATTEMPTS", 3), 1),
                              wait_exponential_multiplier=500)
    return Client(api)
