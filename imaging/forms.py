"""Forms and upload limits for the patient's imaging pages."""

from __future__ import annotations

from django import forms
from django.core.files.uploadhandler import FileUploadHandler, SkipFile, StopUpload
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

# One DICOM file from a CD is rarely over 20 MB (a long ultrasound loop can reach ~50 MB);
# 64 MB per file covers real copies while bounding the temporary disk a single request can fill.
MAX_FILE_BYTES = 64 * 1024 * 1024
# 256 MB and 50 files per check: a whole CT series from a CD fits in a few requests, and one
# request cannot tie up the server for long.
MAX_TOTAL_BYTES = 256 * 1024 * 1024
MAX_FILES = 50


class LimitedUploadHandler(FileUploadHandler):
    """Stops reading a file past ``MAX_FILE_BYTES`` and the upload past ``MAX_TOTAL_BYTES``,
    while the body is being received, so an oversized upload never fills the temporary disk.

    What it skipped is noted on the request (``upload_skipped``, ``upload_stopped``) for the
    form to explain. It stores nothing: the next handlers (memory / temporary file) do.
    """

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.total = 0
        self.file_bytes = 0
        if request is not None:
            request.upload_skipped = []  # type: ignore[attr-defined]
            request.upload_stopped = False  # type: ignore[attr-defined]

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.file_bytes = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.file_bytes += len(raw_data)
        self.total += len(raw_data)
        if self.total > MAX_TOTAL_BYTES:
            self.request.upload_stopped = True  # type: ignore[union-attr]
            raise StopUpload(connection_reset=False)
        if self.file_bytes > MAX_FILE_BYTES:
            self.request.upload_skipped.append(self.file_name)  # type: ignore[union-attr]
            raise SkipFile
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    widget = MultipleFileInput

    def __init__(self, **kwargs) -> None:
        # An empty file is reported per file ("not a scan file"), not as a form error.
        super().__init__(allow_empty_file=True, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, list | tuple) and data:
            return [single(d, initial) for d in data]
        if isinstance(data, list | tuple):
            data = None  # nothing chosen: the "required" check below applies
        return [single(data, initial)] if data else single(data, initial)


class VerifyCopyForm(forms.Form):
    files = MultipleFileField(
        label=_("DICOM files"),
        error_messages={"required": _("Choose at least one file to check.")},
    )

    def __init__(self, *args, request: HttpRequest | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.request = request
        self.fields["files"].help_text = _(
            "Choose one or more files, for example from the DICOM folder of a CD. Up to %(n)d files, %(size)s each."
        ) % {"n": MAX_FILES, "size": filesizeformat(MAX_FILE_BYTES)}
        self.fields["files"].widget.attrs.update({"multiple": True})

    def clean(self):
        cleaned = super().clean()
        skipped = getattr(self.request, "upload_skipped", []) if self.request is not None else []
        stopped = getattr(self.request, "upload_stopped", False) if self.request is not None else False
        if (stopped or skipped) and not cleaned.get("files"):
            self.errors.pop("files", None)  # "choose a file" would be wrong: they did, it was too big
        if stopped:
            raise forms.ValidationError(
                _("Together the files are larger than %(size)s. Check fewer files at a time."),
                params={"size": filesizeformat(MAX_TOTAL_BYTES)},
                code="too_large",
            )
        if skipped:
            self.add_error(
                "files",
                ngettext(
                    "%(names)s is larger than %(size)s, the most one check accepts.",
                    "%(names)s are larger than %(size)s, the most one check accepts.",
                    len(skipped),
                )
                % {"names": ", ".join(skipped[:5]), "size": filesizeformat(MAX_FILE_BYTES)},
            )
        files = cleaned.get("files") or []
        if len(files) > MAX_FILES:
            self.add_error("files", _("Choose at most %(n)d files at a time.") % {"n": MAX_FILES})
        for f in files:
            if f.size > MAX_FILE_BYTES:  # a handler-less call (tests, other entry points)
                self.add_error("files", _("%(name)s is larger than %(size)s.") % {"name": f.name, "size": filesizeformat(MAX_FILE_BYTES)})
        return cleaned
