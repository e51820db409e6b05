"""Writing the DICOMDIR (PS3.10 / PS3.3 F) of an export archive (IHE PDI layout).

Written by hand, without pydicom, on purpose: the export worker must stay under 100 MB while it
packages (measured by benchmarks/export_memory.py), and ``import pydicom`` alone loads numpy, Pillow
and the pylibjpeg plugins, about 49 MB. A DICOMDIR needs only a dozen element types in explicit
VR little endian, so a small encoder does it (8 ms for 300 files, against 0.1 s with pydicom).
tests/exports/test_dicomdir.py reads what it writes with pydicom's ``FileSet`` (which follows
every record offset) and checks each record against pydicom's own encoding of it.

The records (PATIENT > STUDY > SERIES > IMAGE) are built from facts the packager already has
(our rows for an original, the rewritten header for a de-identified copy), so the DICOMDIR never
needs the files again. File IDs are names we made (``DICOM/ST0001/SE0001/IM000001``), never
header values (docs/security.md §16).
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field
from typing import Any, BinaryIO

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
# "2.25." + a UUID as an integer (PS3.5 B.2): Lightbox's implementation class, fixed once.
IMPLEMENTATION_CLASS_UID = "2.25.171417298329934633580287425427926530737"
IMPLEMENTATION_VERSION = "LIGHTBOX_1"
UTF8 = "ISO_IR 192"

_IN_USE = 0xFFFF
_LONG_LENGTH_VRS = {"OB", "SQ"}  # the two 4-byte-length VRs we write
_SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_ITEM_TAG = b"\xfe\xff\x00\xe0"


@dataclass(frozen=True)
class Entry:
    """One file of the archive as its DICOMDIR IMAGE record describes it."""

    file_id: tuple[str, ...]  # e.g. ("DICOM", "ST0001", "SE0001", "IM000001")
    patient_id: str
    patient_name: str
    study_uid: str
    study_date: str
    study_time: str
    study_description: str
    study_id: str
    accession: str
    series_uid: str
    modality: str
    series_number: int | None
    sop_class: str
    sop_uid: str
    transfer_syntax: str
    instance_number: int | None


def _text(ds: Any, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value)


def _int(ds: Any, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def entry_from_header(ds: Any, file_id: tuple[str, ...]) -> Entry:
    """The DICOMDIR facts of one instance, from its (de-identified) header: a pydicom Dataset,
    read through ``get`` only, so this module need not import pydicom."""
    meta = getattr(ds, "file_meta", None) or {}
    return Entry(
        file_id=file_id,
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        study_uid=_text(ds, "StudyInstanceUID"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        study_description=_text(ds, "StudyDescription"),
        study_id=_text(ds, "StudyID"),
        accession=_text(ds, "AccessionNumber"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        modality=_text(ds, "Modality") or "OT",
        series_number=_int(ds, "SeriesNumber"),
        sop_class=_text(ds, "SOPClassUID"),
        sop_uid=_text(ds, "SOPInstanceUID"),
        transfer_syntax=str(meta.get("TransferSyntaxUID", EXPLICIT_VR_LITTLE_ENDIAN)),
        instance_number=_int(ds, "InstanceNumber"),
    )


def _element(tag: int, vr: str, value: bytes) -> bytes:
    """One explicit VR little endian element; ``value`` already padded to an even length."""
    if vr in _LONG_LENGTH_VRS:
        return struct.pack("<HH2s2xI", tag >> 16, tag & 0xFFFF, vr.encode("ascii"), len(value)) + value
    if len(value) > 0xFFFF:
        raise ValueError(f"value too long for ({tag >> 16:04X},{tag & 0xFFFF:04X}) {vr}")
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode("ascii"), len(value)) + value


def _string(tag: int, vr: str, value: str, encoding: str = "ascii") -> bytes:
    data = value.encode(encoding)
    if len(data) % 2:
        data += b"\x00" if vr == "UI" else b" "  # PS3.5 6.2: UIDs pad with NUL, text with space
    return _element(tag, vr, data)


def _ul(tag: int, value: int) -> bytes:
    return _element(tag, "UL", struct.pack("<I", value))


def _us(tag: int, value: int) -> bytes:
    return _element(tag, "US", struct.pack("<H", value))


def _is(value: int | None) -> str:
    return "" if value is None else str(value)


@dataclass
class _Node:
    kind: str
    attributes: list[tuple[int, str, str]]  # (tag, VR, value) of the record's own attributes
    children: list[_Node] = field(default_factory=list)
    offset: int = 0

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()

    def encode(self) -> bytearray:
        """The record's elements in tag order; its two offsets are patched in later, at fixed
        places (bytes 8 and 30), so encoding once gives the record's final length."""
        texts = [value for _, vr, value in self.attributes if vr != "UI"]
        # Non-ASCII text (a patient's name, say) is written as UTF-8 and declared in the record.
        encoding = "ascii" if all(t.isascii() for t in texts) else "utf-8"
        elements = [(0x00041400, _ul(0x00041400, 0)), (0x00041410, _us(0x00041410, _IN_USE)),
                    (0x00041420, _ul(0x00041420, 0)), (0x00041430, _string(0x00041430, "CS", self.kind))]
        if encoding != "ascii":
            elements.append((0x00080005, _string(0x00080005, "CS", UTF8)))
        elements += [(tag, _string(tag, vr, value, encoding)) for tag, vr, value in self.attributes]
        elements.sort(key=lambda pair: pair[0])
        return bytearray(b"".join(data for _, data in elements))


def _tree(entries: list[Entry]) -> list[_Node]:
    patients: dict[str, _Node] = {}
    studies: dict[str, _Node] = {}
    series: dict[str, _Node] = {}
    roots: list[_Node] = []
    for e in entries:
        patient = patients.get(e.patient_id)
        if patient is None:
            patient = patients[e.patient_id] = _Node("PATIENT", [
                (0x00100010, "PN", e.patient_name), (0x00100020, "LO", e.patient_id)])
            roots.append(patient)
        study = studies.get(e.study_uid)
        if study is None:
            study = studies[e.study_uid] = _Node("STUDY", [
                (0x00080020, "DA", e.study_date), (0x00080030, "TM", e.study_time),
                (0x00080050, "SH", e.accession), (0x00081030, "LO", e.study_description),
                (0x0020000D, "UI", e.study_uid), (0x00200010, "SH", e.study_id)])
            patient.children.append(study)
        ser = series.get(e.series_uid)
        if ser is None:
            ser = series[e.series_uid] = _Node("SERIES", [
                (0x00080060, "CS", e.modality), (0x0020000E, "UI", e.series_uid),
                (0x00200011, "IS", _is(e.series_number))])
            study.children.append(ser)
        ser.children.append(_Node("IMAGE", [
            (0x00041500, "CS", "\\".join(e.file_id)), (0x00041510, "UI", e.sop_class),
            (0x00041511, "UI", e.sop_uid), (0x00041512, "UI", e.transfer_syntax),
            (0x00200013, "IS", _is(e.instance_number))]))
    return roots


def _file_meta() -> bytes:
    elements = b"".join([
        _element(0x00020001, "OB", b"\x00\x01"),
        _string(0x00020002, "UI", MEDIA_STORAGE_DIRECTORY),
        # Random (2.25.<uuid>): derived from nothing in the studies.
        _string(0x00020003, "UI", f"2.25.{uuid.uuid4().int}"),
        _string(0x00020010, "UI", EXPLICIT_VR_LITTLE_ENDIAN),
        _string(0x00020012, "UI", IMPLEMENTATION_CLASS_UID),
        _string(0x00020013, "SH", IMPLEMENTATION_VERSION),
    ])
    return b"\x00" * 128 + b"DICM" + _ul(0x00020000, len(elements)) + elements


def write_dicomdir(out: BinaryIO, entries: list[Entry], *, fileset_id: str = "LIGHTBOX") -> None:
    """Write a complete DICOMDIR describing ``entries`` (in archive order) to ``out``."""
    roots = _tree(entries)
    nodes = [node for root in roots for node in root.walk()]
    encoded = [node.encode() for node in nodes]
    head = _file_meta() + _string(0x00041130, "CS", fileset_id[:16])
    # Root offsets (two UL), the consistency flag (US) and the sequence header (tag, VR,
    # reserved, undefined length) come next: 12 + 12 + 10 + 12 bytes. Offsets count from the
    # start of the file, preamble included (PS3.3 F.3.2.1).
    offset = len(head) + 12 + 12 + 10 + 12
    for node, data in zip(nodes, encoded, strict=True):
        node.offset = offset
        offset += 8 + len(data)
    record_of = {id(node): data for node, data in zip(nodes, encoded, strict=True)}
    for siblings in [roots] + [node.children for node in nodes]:
        for i, node in enumerate(siblings):
            data = record_of[id(node)]
            struct.pack_into("<I", data, 8, siblings[i + 1].offset if i + 1 < len(siblings) else 0)
            struct.pack_into("<I", data, 30, node.children[0].offset if node.children else 0)
    parts = [head, _ul(0x00041200, roots[0].offset if roots else 0), _ul(0x00041202, roots[-1].offset if roots else 0),
             _us(0x00041212, 0), struct.pack("<HH2s2xI", 0x0004, 0x1220, b"SQ", 0xFFFFFFFF)]
    for data in encoded:
        parts.append(_ITEM_TAG + struct.pack("<I", len(data)))
        parts.append(bytes(data))
    parts.append(_SEQUENCE_END)
    out.write(b"".join(parts))
