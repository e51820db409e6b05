"""The only place in Lightbox that imports pydicom (STYLE.md "Shape").

- ``parse``: defensive reading of one file into plain metadata (ingest).
- ``render``: decoding one frame to an 8-bit PNG/WebP (viewer, thumbnails).
- ``synth``: generated phantoms and identity rewriting for demo data and benchmarks.
- ``terms``: descriptions in plain case, modality codes' meanings (pydicom's CID 33/29).
- ``sr``: a report (Structured Report, Encapsulated PDF) read for the patient; ``report_synth``
  generates both for tests and the demo.

Nothing from pydicom leaks out of this package: callers get dataclasses, dicts, bytes and
exceptions with a human-readable reason.
"""

import logging

import pydicom.config  # noqa: F401 - imported first: it resets its logger's level on import

# pydicom logs every odd value it meets (with the value itself, which can be patient data).
# Hostile and sloppy files are expected here and each rejection carries its own reason, so only
# pydicom's errors reach the log (docs/security.md §14: no patient data in logs).
logging.getLogger("pydicom").setLevel(logging.ERROR)
