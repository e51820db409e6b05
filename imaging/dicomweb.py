"""The DICOMweb client ``imaging.pacs`` syncs through (issue 8), in a module of its own so that
importing ``imaging.pacs`` does not load dicomweb-client and pydicom."""

from __future__ import annotations

from typing import Any

from dicomweb_client.api import DICOMwebClient

from imaging.pacs import PacsError


class Client(DICOMwebClient):
    """dicomweb-client, plus retrieval of an instance's bytes exactly as the PACS sends them.

    ``retrieve_instance`` parses into a pydicom Dataset; re-encoding that would not give the
    archive's bytes, and the integrity promise (byte-identical, SHA-256 at ingest) needs them.
    This reuses the client's own URL building, session, retry and multipart decoding.
    """

    def retrieve_instance_bytes(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        url = self._get_instances_url(self._retrieve_transaction(), study_uid, series_uid, sop_uid)
        # transfer-syntax=*: the stored encoding, not a transcoded Explicit VR Little Endian.
        headers = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
        response = self._http_get(url, headers=headers)
        if response.headers.get("Content-Type", "").startswith("application/dicom"):
            return response.content  # some archives send the single part unwrapped
        parts = list(self._decode_multipart_message(response, stream=False))
        if len(parts) != 1:
            raise PacsError(f"The PACS sent {len(parts)} parts for one instance.")
        return parts[0]

    @staticmethod
    def _retrieve_transaction() -> Any:
        from dicomweb_client.web import _Transaction

        return _Transaction.RETRIEVE
