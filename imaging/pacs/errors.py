"""What a PACS sync raises: kept apart from the client (which loads dicomweb-client, requests and
pydicom) so that the Celery task options and the command can name them without loading any."""

from __future__ import annotations


class PacsError(Exception):
    """The PACS could not be reached or answered wrongly; the run may be retried."""


class PacsNotConfigured(PacsError):
    """``PACS_DICOMWEB_URL`` is empty."""
