"""Writes for imaging, one module per concern (import from the module, nothing is re-exported):

- ``ingest``: ``dicom_import`` (files, folders, ZIPs, DICOMDIR into rows and storage; one
  ``ingest`` access event per study) and its summary types.
- ``integrity``: ``instances_verify`` (re-hash stored files), ``conflict_alert_raise`` (a
  different file under a known UID), ``study_status_set`` ("under review" while a flag is
  open) and ``integrity_alert_resolve`` (when its flag closes).
- ``patients``: ``patient_account_link`` (the record's account, set once at activation).
- ``rendering``: ``render_frame``, ``render_thumbnail``, ``viewer_metadata``, the one window rule
  (``window_check``) and the one slice order (``slices_in_order``); not audited per frame.
- ``viewing``: the audited reads of the patient's pages (``study_open``, ``series_open``,
  ``instance_download``, ``copies_verify``), each selecting and recording one access event in
  one transaction.
"""
