"""Pulling studies from the hospital PACS over DICOMweb, one module per concern (import from the
module, nothing is re-exported):

- ``sync``: ``pacs_sync`` (callers: ``manage.py sync_pacs``, the periodic ``imaging.pacs_sync``
  task and ``imaging.pacs_fetch_patient``), ``pacs_patient_fetch_enqueue`` (account activation)
  and ``pacs_sync_failed`` (the tasks' final failure).
- ``client``: the DICOMweb client (QIDO-RS, WADO-RS metadata, WADO-RS bytes) and
  ``pacs_configured``.
- ``errors``: ``PacsError`` and ``PacsNotConfigured``.
- The sync's reads, and those of /healthz and the home page, are in ``imaging.selectors``
  (``pacs_sync_patients``, ``pacs_known_instances``, ``pacs_health``, ``pacs_fetch_progress``).

For each patient with an activated account a sync asks the PACS (QIDO-RS) for the patient's
studies, compares the PACS's per-instance metadata (WADO-RS) with what an earlier run saw,
retrieves the new or changed instances (WADO-RS, in the transfer syntax the PACS stores, so the
bytes are the PACS's own) into a private temporary directory, and imports them through
``imaging.services.ingest.dicom_import``. Audited there: one ``ingest`` access event per study
per run; a changed file under a known SOP Instance UID becomes an integrity conflict, never an
overwrite.

Matching: studies are looked up by PatientID and kept when the PACS's Issuer of Patient ID is
the patient's issuer. A PACS that stores no issuer is taken to hold IDs of
``PACS_DEFAULT_ISSUER``: its studies match only patients of that issuer, never a patient of
another assigning authority who happens to share the number. Every retrieved file is checked
again (PatientID and issuer in its own header, ``imaging.dicom.parse.patient_identity``) before
it is imported.

Restartable: progress is kept per instance (``PacsInstance``) as each study is imported, and a
patient is synced under a PostgreSQL advisory lock that dies with the connection, so a run
killed half-way is simply run again: imported files are skipped by their recorded metadata
fingerprint or, if the kill came before that record, found as duplicates by the import.
"""
