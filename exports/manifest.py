"""MANIFEST.json, its Ed25519 signature and the README of an export archive.

Whom the manifest names: an *original* archive is the patient's own copy of their record (like
a CD the hospital hands over), so ``created_for`` carries the patient's name and hospital
number, exactly as the DICOM headers inside it do. A *de-identified* archive names nobody:
``created_for`` says only that it is a de-identified copy, so the manifest does not undo the
de-identification of the files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from django.template.loader import render_to_string

from core.signing import private_key, public_key_pem

FORMAT = "lightbox-export/1"
PUBLIC_KEY_PATH = "/.well-known/lightbox-signing-key.pem"


@dataclass
class FileRecord:
    path: str
    sha256: str
    size: int
    study_uid: str = ""
    series_uid: str = ""
    sop_instance_uid: str = ""
    modality: str = ""
    burned_in_annotation: bool = False

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path, "sha256": self.sha256, "size": self.size}
        if self.sop_instance_uid:
            data.update(
                study_uid=self.study_uid,
                series_uid=self.series_uid,
                sop_instance_uid=self.sop_instance_uid,
                modality=self.modality,
                burned_in_annotation=self.burned_in_annotation,
            )
        return data


@dataclass
class Manifest:
    created_at: str
    created_for: dict[str, str]
    deidentified: bool
    hospital: str
    files: list[FileRecord] = field(default_factory=list)

    def studies(self) -> list[dict[str, Any]]:
        """Study and series UIDs (as they appear in the archive) with their file counts."""
        studies: dict[str, dict[str, dict[str, Any]]] = {}
        for f in self.files:
            if not f.sop_instance_uid:
                continue
            series = studies.setdefault(f.study_uid, {})
            entry = series.setdefault(f.series_uid, {"series_uid": f.series_uid, "modality": f.modality, "files": 0})
            entry["files"] += 1
        return [{"study_uid": uid, "series": list(series.values())} for uid, series in studies.items()]

    def as_json(self) -> bytes:
        key_sha = hashlib.sha256(public_key_pem()).hexdigest()
        data = {
            "format": FORMAT,
            "created_at": self.created_at,
            "created_by": self.hospital,
            "created_for": self.created_for,
            "deidentified": self.deidentified,
            "deidentification": (
                "DICOM PS3.15 Annex E Basic Application Confidentiality Profile; UIDs replaced "
                "consistently within this archive; dates shifted; private tags removed"
                if self.deidentified
                else None
            ),
            "studies": self.studies(),
            "files": [f.as_dict() for f in self.files],
            "signature": {
                "algorithm": "Ed25519",
                "file": "MANIFEST.sig",
                "covers": "the exact bytes of MANIFEST.json",
                "public_key": PUBLIC_KEY_PATH,
                "public_key_sha256": key_sha,
            },
        }
        return json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"


def sign(manifest_bytes: bytes) -> bytes:
    """Raw 64-byte Ed25519 signature (what ``openssl pkeyutl -verify -rawin`` expects)."""
    return private_key().sign(manifest_bytes)


def readme(*, deidentified: bool, burned_in: list[str], site_url: str, hospital: str,
           pixel_text: dict[str, list[str]] | None = None, options: list[str] | None = None,
           faces: list[str] | None = None) -> bytes:
    """README.txt of an archive: how to open and check it and, for a de-identified copy, what
    was done (``options``, in plain words), which images had text in their pixels (masked,
    could not be checked, flagged by the scanner only) and which folders are head volumes."""
    pixel_text = pixel_text or {}
    text = render_to_string(
        "exports/archive_readme.txt",
        {
            "deidentified": deidentified,
            "burned_in": burned_in,
            "masked": pixel_text.get("masked", []),
            "not_checked": pixel_text.get("not_checked", []),
            "flagged": pixel_text.get("flagged", []),
            "options": options or [],
            "faces": faces or [],
            "site_url": site_url.rstrip("/"),
            "public_key_path": PUBLIC_KEY_PATH,
            "hospital": hospital,
        },
    )
    # Windows Notepad before 2018 shows LF-only files as one line; CRLF reads everywhere.
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
