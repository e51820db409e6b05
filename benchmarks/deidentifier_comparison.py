"""The same DICOM files through Lightbox's de-identifier and other maintained ones: what each leaves behind.

    .venv/bin/python benchmarks/deidentifier_comparison.py [--write-docs] [--deid-path DIR]

Inputs: every file pydicom ships on disk that pydicom reads (``imaging.dicom.synth.samples_dir()``;
files it cannot read are counted and skipped), one slice of the generated CT
(``_common.write_ct``), the generated 30-frame ultrasound (``_common.write_ultrasound``), and two
generated files holding every attribute of DICOM PS3.15 Table E.1-1 (``table_files``: each row of
``imaging.dicom.ps315.table()`` with a value of its VR from pydicom's dictionary, plus curves
(50xx), overlays (60xx) with their descriptions, labels and comments, and a private block holding
a name and a private sequence holding a name), one at the top level only and one also inside a
sequence item; built with the de-identifier test's own builder when it can be imported.

Tools, each with its library defaults unless said here:
- Lightbox: ``imaging.dicom.deidentify.Deidentifier(seed=SEED).deidentify(file)`` (header only: no OCR regions);
- dicom-anonymizer: ``dicomanonymizer.anonymize_dataset`` with its newest table (``dicomfields_2026c``)
  and private tags deleted (its default);
- dicognito: ``dicognito.anonymizer.Anonymizer(seed=SEED).anonymize`` (Lightbox's engine before its PS3.15 table);
- deid, when importable (``pip install deid==0.4.13``, or ``--deid-path`` to a ``pip install
  --target`` folder): ``deid.dicom.replace_identifiers`` with its default recipe and
  ``remove_private=True``.

For every element of the original whose tag has a row in Table E.1-1 (``ps315.rule_for``: any
nesting level, repeating groups, private tags, file meta), the de-identified copy "leaves it
behind" when the element at the same place (same tags and item numbers) still holds the
original non-empty value (compared as bytes, so a private element read once as UN and once as
LO still matches). A sequence row is left behind when anything kept inside it counts: for a
sequence the profile removes (X), anything; otherwise a person name or an element with a row of
its own. Counted per row: the number of files. Two groups the table does not list are counted too, because dicognito kept
them in patients' copies: the other elements of curves and overlays (``ps315.in_curve_or_overlay``) and the file
meta's application-entity titles and private information. A value kept where one of the tool's
own declared options (its De-identification Method Code Sequence) marks the row K (keep) or C
(modify, here left as it was) is still counted, and shown apart.

Also counted: realistic replacement names and places, that is person names (VR PN) and
institution names and addresses in a copy that differ from the original but are not obviously
neutral (``ANONYMOUS``, ``ANONYMIZED``, ``REMOVED``, a hash ...), as dicognito's
"MCMAHON^MARYANNE^BRITTANY".

``--write-docs`` writes docs/deidentifier-comparison.md (date, versions, inputs, totals, top
offenders per tool, the side-by-side table, how to rerun).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import io
import logging
import re
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, setup_lightbox, write_ct, write_ultrasound  # noqa: E402

DOCS = ROOT / "docs" / "deidentifier-comparison.md"
FULL = 0xFFFFFFFF
# File meta elements that name the systems a file went through (dicognito kept the Source AE
# Title kept); Table E.1-1 lists only the Media Storage SOP Instance UID of group 0002.
META_EXTRAS = {
    0x00020016: "Source Application Entity Title",
    0x00020017: "Sending Application Entity Title",
    0x00020018: "Receiving Application Entity Title",
    0x00020100: "Private Information Creator UID",
    0x00020102: "Private Information",
}
CURVE_OVERLAY = "(50xx/60xx,eeee) other curve and overlay elements (removed whole with their data)"
# A replacement is "obviously neutral" when each of its parts is one of these words (or a number
# or a hash): nobody takes "ANONYMOUS" for a person.
NEUTRAL_WORDS = {
    "", "ANON", "ANONYMOUS", "ANONYMIZED", "ANONYMISED", "ANONYMOUSE", "REMOVED", "REDACTED", "DEIDENTIFIED",
    "DE-IDENTIFIED", "UNKNOWN", "PATIENT", "NONE", "NAME", "NO NAME", "NULL", "N/A", "NA", "X", "XX", "XXX", "*",
}
NEUTRAL_PART = re.compile(r"^(?:[0-9A-F.\-_ ]+|X+|\*+|(?:ANONYMOUS|ANONYMIZED|PATIENT|STUDY|SERIES|STATION|"
                          r"HOSPITAL|INSTITUTION|DEPARTMENT|ADDRESS|PERSON|PHYSICIAN|OPERATOR)[ _\-]?\d*)$")
# Both tools that shift dates draw the shift from a seed: a fixed one makes the counts repeatable
# (dicognito shifts by whole hours, and keeps times when the shift is a multiple of 24 hours).
SEED = "benchmarks/deidentifier_comparison.py"
PLACES = {0x00080080: "InstitutionName", 0x00080081: "InstitutionAddress", 0x00081040: "InstitutionalDepartmentName",
          0x00101040: "PatientAddress"}


# --- Inputs -------------------------------------------------------------------------------------


def table_files(folder: Path) -> tuple[list[tuple[str, Path]], str]:
    """Two files holding every attribute of Table E.1-1: at the top level only, and at the top
    level and again inside a sequence item. Built by the de-identifier's own test module
    (``tests/imaging/test_deidentify.py``: each exact row with a value of its VR, two overlays,
    a curve, a private block with a name and a private sequence holding a name), so the
    comparison and the test use one definition; this script's ``every_attribute_file`` when that
    module cannot be imported."""
    import pydicom

    folder.mkdir(parents=True, exist_ok=True)
    try:
        from tests.imaging import test_deidentify as built
    except ImportError:
        top = every_attribute_file(folder / "E11-top.dcm", nested=False)
        both = every_attribute_file(folder / "E11-nested.dcm", nested=True)
        source = "benchmarks/deidentifier_comparison.py: every_attribute_file"
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flat = pydicom.Dataset()
            built.fill(flat)
            built.add_curves_overlays_private(flat)
            flat.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
            top, both = folder / "E11-top.dcm", folder / "E11-nested.dcm"
            top.write_bytes(built.part10(flat, SourceApplicationEntityTitle="BENCHSOURCE").getvalue())
            both.write_bytes(built.part10(built.the_whole_table(), SourceApplicationEntityTitle="BENCHSOURCE").getvalue())
        source = "tests/imaging/test_deidentify.py: fill, add_curves_overlays_private, the_whole_table"
    return [("every E.1-1 attribute, top level", top), ("every E.1-1 attribute, top level and nested", both)], source


def every_attribute_file(path: Path, *, nested: bool) -> Path:
    """A Part 10 file holding every exact-tag row of Table E.1-1 with a distinct value of its VR
    (pydicom's dictionary; UN for the few tags newer than it), at the top level (group 0002 in
    the file meta) and, if ``nested``, again inside an item of Referenced Series Sequence (a
    sequence the table does not list), plus a curve, an overlay and a private block with a name
    and a sequence."""
    import pydicom
    from pydicom.datadict import dictionary_has_tag, dictionary_VR
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from imaging.dicom import ps315

    def value(vr: str, i: int, keyword: str) -> object:
        day = dt.date(1950, 1, 1) + dt.timedelta(days=97 * i)
        text = f"{keyword or 'Attribute'} {i}"
        match vr:
            case "AE" | "CS" | "SH":
                return f"V{i}{keyword.upper()}"[:16] if vr != "CS" else f"CODE{i}"
            case "AS":
                return f"{i % 100:03d}Y"
            case "DA":
                return day.strftime("%Y%m%d")
            case "DT":
                return day.strftime("%Y%m%d") + f"{i % 24:02d}1010"
            case "TM":
                return f"{i % 24:02d}{i % 60:02d}{(7 * i) % 60:02d}"
            case "DS":
                return f"{i}.5"
            case "IS":
                return str(i)
            case "US" | "UL":
                return i
            case "SS" | "SL":
                return -i
            case "FL" | "FD":
                return i + 0.25
            case "PN":
                return f"Family{i}^Given{i}"
            case "UI":
                return str(generate_uid(prefix=None))
            case "UR":
                return f"http://example.invalid/{i}"
            case "OB" | "OW" | "UN":
                data = f"bytes-{i}".encode()
                return data + b"\0" * (len(data) % 2)
            case "SQ":
                item = Dataset()
                item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = f"C{i}", "99BENCH", f"Meaning {i}"
                item.PersonName = f"Inner{i}^Person"
                return Sequence([item])
            case _:
                return text[:64]

    def fill(target: Dataset, meta: Dataset | None) -> None:
        for i, rule in enumerate(ps315.table().rules):
            if rule.mask != FULL or rule.tag >> 16 == 0:  # command set rows: never in a file
                continue
            vr = dictionary_VR(rule.tag).split(" or ")[0] if dictionary_has_tag(rule.tag) else "UN"
            element = DataElement(rule.tag, vr, value(vr, i, rule.keyword))
            if rule.tag >> 16 == 2:
                if meta is not None:
                    meta.add(element)
            else:
                target.add(element)

    meta = FileMetaDataset()
    ds = Dataset()
    fill(ds, meta)
    if nested:
        item = Dataset()
        fill(item, None)
        ds.ReferencedSeriesSequence = Sequence([item])
    sop_uid = str(generate_uid(prefix=None))
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.SourceApplicationEntityTitle = "BENCHSOURCE"
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.Modality = "OT"
    ds.add_new(0x50000005, "US", 1)  # Curve Dimensions
    ds.add_new(0x50000022, "LO", "Curve of Family^Given")  # Curve Description
    ds.add_new(0x50003000, "OB", b"curvedata\0")
    ds.add_new(0x60000010, "US", 8)  # Overlay Rows
    ds.add_new(0x60000011, "US", 8)
    ds.add_new(0x60000022, "LO", "Overlay of Family^Given")  # Overlay Description
    ds.add_new(0x60001500, "LO", "Overlay label MRN 1234")  # Overlay Label
    ds.add_new(0x60003000, "OW", b"\xff" * 8)
    ds.add_new(0x60004000, "LT", "Overlay comment naming Family^Given")
    block = ds.private_block(0x0009, "LIGHTBOX BENCH", create=True)
    block.add_new(0x01, "PN", "Private^Name")
    inner = Dataset()
    inner.PatientName = "Private^SequenceName"
    block.add_new(0x02, "SQ", Sequence([inner]))
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def bundled_inputs() -> tuple[list[Path], list[str]]:
    """pydicom's bundled files that pydicom reads whole, and the names of those it cannot."""
    import pydicom

    from imaging.dicom import synth

    readable, unreadable = [], []
    for path in sorted(p for p in synth.samples_dir().rglob("*") if p.is_file()):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path)
                list(walk(ds))  # every element decodes
        except Exception:  # noqa: BLE001 - "readable" is whatever pydicom reads without error
            unreadable.append(path.name)
            continue
        readable.append(path)
    return readable, unreadable


# --- Tools --------------------------------------------------------------------------------------


def _reread(ds) -> object:
    """What a tool's dataset becomes once written as a file and read back (what a recipient gets)."""
    import pydicom

    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=False)
    out.seek(0)
    return pydicom.dcmread(out, force=True)


def tools(deid_path: str) -> tuple[dict[str, Callable[[Path], object]], dict[str, str]]:
    """Each available tool as path -> de-identified dataset, and why any is missing."""
    import pydicom

    available: dict[str, Callable[[Path], object]] = {}
    missing: dict[str, str] = {}

    from imaging.dicom import deidentify as lightbox

    engine = lightbox.Deidentifier(seed=SEED)

    def run_lightbox(path: Path) -> object:
        with open(path, "rb") as fh:
            out = engine.deidentify(fh)
        with out.file as copy:
            return pydicom.dcmread(copy, force=True)

    available["Lightbox"] = run_lightbox

    try:
        from dicomanonymizer import anonymize_dataset
        from dicomanonymizer.simpledicomanonymizer import initialize_actions

        def run_anonymizer(path: Path) -> object:
            ds = pydicom.dcmread(path)
            anonymize_dataset(ds, None, True, base_rules_gen=lambda: initialize_actions("dicomfields_2026c"))
            return _reread(ds)

        available[f"dicom-anonymizer {importlib.metadata.version('dicom-anonymizer')}"] = run_anonymizer
    except ImportError as exc:
        missing["dicom-anonymizer"] = str(exc)

    try:
        from dicognito.anonymizer import Anonymizer

        anonymizer = Anonymizer(seed=SEED)

        def run_dicognito(path: Path) -> object:
            ds = pydicom.dcmread(path)
            anonymizer.anonymize(ds)
            return _reread(ds)

        available[f"dicognito {importlib.metadata.version('dicognito')}"] = run_dicognito
    except ImportError as exc:
        missing["dicognito"] = str(exc)

    if deid_path:
        sys.path.append(deid_path)
    try:
        from deid.dicom import replace_identifiers
        from deid.logger import bot
        from deid.version import __version__ as deid_version

        bot.level = 0  # its per-file warnings, not ours to read here
        logging.getLogger("deid").setLevel(logging.ERROR)

        def run_deid(path: Path) -> object:
            [ds] = replace_identifiers([str(path)], save=False, remove_private=True)
            return _reread(ds)

        available[f"deid {deid_version}"] = run_deid
    except ImportError as exc:
        missing["deid"] = f"{exc} (pip install deid==0.4.13, or --deid-path)"
    return available, missing


# --- Measuring ----------------------------------------------------------------------------------

def walk(ds, prefix: tuple = ()) -> Iterator[tuple[tuple, object]]:
    """(path, element) for every element of ``ds`` at every nesting level, file meta first. A path
    is ("meta", tag), (tag,), or (sequence tag, item number, tag, ...)."""
    meta = getattr(ds, "file_meta", None) if not prefix else None
    if meta is not None:
        for element in meta:
            yield ("meta", element.tag), element
    for element in ds:
        path = (*prefix, element.tag)
        yield path, element
        if element.VR == "SQ" and element.value is not None:
            for number, item in enumerate(element.value):
                yield from walk(item, (*path, number))


def canonical(element) -> bytes | None:
    """The element's value as stripped bytes, or None when empty or a sequence."""
    value = element.value
    if value is None or element.VR == "SQ":
        return None
    if isinstance(value, bytes | bytearray):
        data = bytes(value)
    elif isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        data = "\\".join(str(v) for v in value).encode("utf-8", "replace")
    else:
        data = str(value).encode("utf-8", "replace")
    data = data.strip(b"\0 ")
    return data or None


def bucket_of(tag: int, meta: bool) -> str | None:
    from imaging.dicom import ps315

    if meta and tag in META_EXTRAS:
        return f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {META_EXTRAS[tag]} [file meta, not in E.1-1]"
    rule = ps315.rule_for(tag)
    if rule is not None:
        return f"{rule.tag_text} {rule.name} [{rule.basic}]"
    if ps315.in_curve_or_overlay(tag):
        return CURVE_OVERLAY
    return None


def declared_options(ds) -> set[str]:
    from imaging.dicom import ps315

    by_code = {code: key for key, (code, _) in ps315.OPTIONS.items()}
    codes = {str(item.get("CodeValue", "")) for item in ds.get("DeidentificationMethodCodeSequence", None) or []}
    return {by_code[c] for c in codes if c in by_code}


def neutral(text: str) -> bool:
    parts = [p.strip().upper() for p in re.split(r"[\^=,]", text)]
    return all(p in NEUTRAL_WORDS or NEUTRAL_PART.match(p) for p in parts)


@dataclass
class Tally:
    files: int = 0
    failed: list[str] = field(default_factory=list)
    rows: Counter = field(default_factory=Counter)  # bucket -> files leaving it behind
    rows_allowed: Counter = field(default_factory=Counter)  # bucket -> files where a declared option marks it K or C
    elements: int = 0
    elements_allowed: int = 0
    files_leaking: int = 0
    fake_files: int = 0
    fake_values: Counter = field(default_factory=Counter)
    options: Counter = field(default_factory=Counter)
    generated: dict[str, int] = field(default_factory=dict)  # every-attribute file -> rows left, not allowed
    rows_real: Counter = field(default_factory=Counter)  # bucket -> files, the every-attribute files left out


def compare(original, copy, tally: Tally, *, generated: bool = False) -> int:
    from imaging.dicom import ps315

    options = declared_options(copy)
    tally.options.update(options)
    before = {path: element for path, element in walk(original)}
    after = {path: element for path, element in walk(copy)}
    left: set[str] = set()
    allowed: set[str] = set()
    leaked_paths: set[tuple] = set()
    for path, element in before.items():
        value = canonical(element)
        if value is None or path not in after or canonical(after[path]) != value:
            continue
        leaked_paths.add(path)
    for path, element in before.items():
        tag, meta = path[-1], path[0] == "meta"
        bucket = bucket_of(tag, meta)
        if bucket is None:
            continue
        if element.VR == "SQ":
            if path not in after or not any(_leaks_into(path, p, before, options) for p in leaked_paths):
                continue
        elif path not in leaked_paths:
            continue
        left.add(bucket)
        tally.elements += 1
        rule = ps315.rule_for(tag)
        if rule is not None and options and rule.action(options) in ("K", "C"):
            allowed.add(bucket)
            tally.elements_allowed += 1
    tally.rows.update(left)
    if not generated:
        tally.rows_real.update(left)
    tally.rows_allowed.update(allowed)
    tally.files_leaking += bool(left)
    fakes = []
    for path, element in after.items():
        if path[0] == "meta" or not (element.VR == "PN" or path[-1] in PLACES):
            continue
        value = canonical(element)
        if value is None or (path in before and canonical(before[path]) == value):
            continue
        text = value.decode("utf-8", "replace")
        if not neutral(text):
            fakes.append(text)
    tally.fake_files += bool(fakes)
    tally.fake_values.update(fakes)
    return len(left - allowed)


def _leaks_into(sequence: tuple, leaked: tuple, before: dict, options: set[str]) -> bool:
    """Whether ``leaked`` (a path whose original value was kept) counts against the sequence at
    ``sequence``: for a sequence the profile removes (X), anything kept inside it; for one it
    keeps and cleans (U*, D, Z ...), a kept person name or a kept element with a row of its own
    that no declared option allows (a Referenced SOP Class UID inside a Source Image Sequence is
    not identifying; a time inside a Content Sequence is counted on its own row)."""
    from imaging.dicom import ps315

    if len(leaked) <= len(sequence) or leaked[:len(sequence)] != sequence:
        return False
    rule = ps315.rule_for(sequence[-1])
    if rule is not None and rule.basic == "X":
        return True
    if before[leaked].VR == "PN":
        return True
    own = ps315.rule_for(leaked[-1])
    return own is not None and not (options and own.action(options) in ("K", "C"))


def run(inputs: list[tuple[str, Path]], available: dict[str, Callable[[Path], object]]) -> dict[str, Tally]:
    import pydicom

    tallies = {name: Tally() for name in available}
    for label, path in inputs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            original = pydicom.dcmread(path)
            for name, tool in available.items():
                try:
                    copy = tool(path)
                    list(walk(copy))
                except Exception as exc:  # noqa: BLE001 - a tool that fails on a file is a result, reported
                    tallies[name].failed.append(f"{label}: {type(exc).__name__}: {str(exc)[:100]}")
                    continue
                tallies[name].files += 1
                left = compare(original, copy, tallies[name], generated=label.startswith("every E.1-1"))
                if label.startswith("every E.1-1"):
                    tallies[name].generated[label] = left
    return tallies


# --- Reporting ----------------------------------------------------------------------------------


def report(tallies: dict[str, Tally], inputs_text: str, versions: dict[str, str], missing: dict[str, str],
           write_docs: bool) -> None:
    names = list(tallies)
    # Rows left behind only in the two generated every-attribute files (hundreds for a tool that
    # does not know a row) are counted in the totals, not listed.
    rows = sorted({b for t in tallies.values() for b in t.rows_real},
                  key=lambda b: (-sum(t.rows[b] for t in tallies.values()), b))
    width = max(24, *(len(n) for n in names))
    print(inputs_text)
    for tool, why in missing.items():
        print(f"not run: {tool}: {why}")
    print()
    print(f"{'Table E.1-1 row [Basic Profile action]: files leaving the original value':96s}"
          + "".join(f"{n[:width]:>{width + 2}s}" for n in names))
    for bucket in rows:
        print(f"{bucket[:96]:96s}" + "".join(f"{tallies[n].rows[bucket]:>{width + 2}d}" for n in names))
    print()
    for line in total_lines(tallies):
        print(f"{line[0]:96s}" + "".join(f"{v:>{width + 2}s}" for v in line[1:]))
    for name, tally in tallies.items():
        examples = ", ".join(f"{v!r}" for v, _ in tally.fake_values.most_common(4))
        if examples:
            print(f"{name}: realistic replacements, e.g. {examples}")
        for failure in tally.failed[:5]:
            print(f"{name} failed on {failure}")
        top = "; ".join(f"{b.split(' [')[0]} ({n})" for b, n in offenders(tally)[:8])
        print(f"{name}: top rows left behind that no declared option marks K or C: {top or 'none'}")
    if write_docs:
        write_markdown(tallies, rows, inputs_text, versions, missing)
        print(f"wrote {DOCS.relative_to(ROOT)}")


def offenders(tally: Tally) -> list[tuple[str, int]]:
    """Rows left behind in files where no declared option allows it, most files first."""
    counts = Counter({b: n - tally.rows_allowed[b] for b, n in tally.rows.items()})
    return [(b, n) for b, n in counts.most_common() if n > 0]


def total_lines(tallies: dict[str, Tally]) -> list[list[str]]:
    t = list(tallies.values())
    return [
        ["files de-identified (failed)", *(f"{x.files} ({len(x.failed)})" for x in t)],
        ["files leaving at least one row behind", *(str(x.files_leaking) for x in t)],
        ["(file, row) pairs left behind", *(str(sum(x.rows.values())) for x in t)],
        ["  of which a declared option marks the row K (keep) or C (modify)", *(str(sum(x.rows_allowed.values())) for x in t)],
        ["elements left behind", *(str(x.elements) for x in t)],
        ["distinct rows left behind in any file", *(str(len(x.rows)) for x in t)],
        *([f"rows left behind, no declared K/C, in: {label}", *(str(x.generated.get(label, "failed")) for x in t)]
          for label in sorted({k for x in t for k in x.generated}, reverse=True)),
        ["files with realistic replacement names or places", *(str(x.fake_files) for x in t)],
        ["options declared (CID 7050, files)", *(", ".join(f"{k} {v}" for k, v in sorted(x.options.items())) or "none"
                                                for x in t)],
    ]


def write_markdown(tallies: dict[str, Tally], rows: list[str], inputs_text: str, versions: dict[str, str],
                   missing: dict[str, str]) -> None:
    names = list(tallies)
    lines = [
        "# De-identifiers compared: what each leaves behind",
        "",
        f"Measured {dt.date.today().isoformat()} by `benchmarks/deidentifier_comparison.py`.",
        "",
        "Rerun (adds this page again): `.venv/bin/python benchmarks/deidentifier_comparison.py --write-docs`.",
        "deid is not a Lightbox dependency; to include it: `.venv/bin/pip install deid==0.4.13` (it brings",
        "matplotlib), or install it with `pip install --target DIR` and pass `--deid-path DIR`.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "",
        "Inputs: " + inputs_text,
        "",
        "How it counts: for every element of an original file whose tag has a row in DICOM PS3.15 Table E.1-1",
        "(`imaging.dicom.ps315`, generated from the standard: any nesting level, 50xx/60xx repeating groups,",
        "private tags, file meta), the tool's copy *leaves it behind* when the element at the same place still",
        "holds the original non-empty value. A sequence row is left behind when something kept inside it",
        "counts: for a sequence the profile removes (X), anything; otherwise a person name or an element with",
        "a row of its own. Each cell is a number of files. Two groups outside the table are counted as well,",
        "because dicognito, Lightbox's earlier engine, kept them: the other elements of curves and overlays, and the file meta's AE",
        "titles and private information. Values that a tool's own declared options (its De-identification Method Code Sequence)",
        "keep (K) or let it clean (C) are still counted, and shown on their own line. Each tool runs with its",
        "library defaults but for what is said here; a tool can be configured to do more:",
        "",
        "- Lightbox: `imaging.dicom.deidentify.Deidentifier(seed).deidentify(file)`, the patient's-copy options",
        "  (headers only here: OCR masking is measured by `benchmarks/deidentify_export.py`);",
        "- dicom-anonymizer: `anonymize_dataset` with its newest table (`dicomfields_2026c`), private tags deleted;",
        "- dicognito: `Anonymizer(seed).anonymize` (Lightbox's engine before its PS3.15 table);",
        "- deid: `replace_identifiers` with its default recipe (`deid.dicom`) and `remove_private=True`.",
        "",
        "Lightbox and dicognito get a fixed seed, so the counts repeat: dicognito shifts dates by whole hours",
        "and keeps a time of day when its shift is a multiple of 24 hours.",
        "",
        "Realistic replacements: person names (VR PN) and institution names and addresses that differ from",
        "the original but are not obviously neutral (\"ANONYMOUS\", \"ANONYMIZED\", a hash): a patient who opens",
        "their copy and sees a stranger's name or clinic is alarmed.",
        "",
        "## Totals",
        "",
        "| | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for line in total_lines(tallies):
        lines.append(f"| {line[0].strip()} | " + " | ".join(line[1:]) + " |")
    lines += ["", "Examples of realistic replacements:", ""]
    for name, tally in tallies.items():
        examples = ", ".join(f"`{v}`" for v, _ in tally.fake_values.most_common(5)) or "none"
        lines.append(f"- {name}: {examples}")
    for tool, why in missing.items():
        lines.append(f"- {tool}: not run ({why})")
    lines += ["", "## Top offenders per tool", "",
              "Rows left behind that none of the tool's declared options marks K or C, by number of files:", ""]
    for name, tally in tallies.items():
        top = offenders(tally)[:12]
        lines.append(f"**{name}**: " + ("; ".join(f"{b} ({n})" for b, n in top) if top else "nothing") + ".")
        lines.append("")
        kept = tally.rows_allowed.most_common(6)
        if kept:
            lines.append(f"Kept where a declared option marks the row K (keep) or C (modify) ({len(tally.rows_allowed)} "
                         "rows), e.g. "
                         + "; ".join(f"{b} ({n})" for b, n in kept) + ".")
            lines.append("")
        if tally.failed:
            lines.append(f"Failed on {len(tally.failed)} file(s): " + "; ".join(f"`{f}`" for f in tally.failed[:8]))
            lines.append("")
    lines += ["## Side by side: files leaving each row behind", "",
              "Every row some tool leaves behind in at least one real or generated image file (the two",
              "every-attribute files count in each cell, but rows left behind only there are not listed: see",
              "Totals).", "",
              "| Table E.1-1 row [Basic Profile action] | " + " | ".join(names) + " |",
              "| --- | " + " | ".join("---:" for _ in names) + " |"]
    for bucket in rows:
        lines.append(f"| {bucket.replace('|', '/')} | " + " | ".join(str(tallies[n].rows[bucket]) for n in names) + " |")
    DOCS.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write-docs", action="store_true", help=f"write {DOCS.relative_to(ROOT)}")
    parser.add_argument("--deid-path", default="", help="a folder holding deid (pip install --target)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-deidcmp-") as tmp:
        tmp_path = Path(tmp)
        setup_lightbox(tmp_path / "lightbox")
        import pydicom

        bundled, unreadable = bundled_inputs()
        ct = write_ct(tmp_path / "ct", slices=1)[0]
        us = write_ultrasound(tmp_path / "us")
        tables, source = table_files(tmp_path / "every")
        inputs = [(p.name, p) for p in bundled] + [("generated CT slice", ct), ("generated ultrasound", us), *tables]
        available, missing = tools(args.deid_path)
        inputs_text = (f"{len(bundled)} files pydicom {pydicom.__version__} ships that it reads "
                       f"({len(unreadable)} it cannot read skipped), one generated 512x512 CT slice, "
                       f"a generated 30-frame 640x480 RGB ultrasound with a name and an ID in its pixels, and two "
                       f"generated files holding every attribute of Table E.1-1, one at the top level only, one also "
                       f"inside a sequence item ({source}); {len(inputs)} files.")
        tallies = run(inputs, available)
        versions = {"pydicom": pydicom.__version__, "Table E.1-1 editions": _edition(), "Lightbox": _commit()}
        report(tallies, inputs_text, versions, missing, args.write_docs)


def _commit() -> str:
    import subprocess

    out = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %cs"],  # noqa: S603, S607
                         capture_output=True, text=True, check=False)
    return f"commit {out.stdout.strip()}" if out.returncode == 0 else "(no git)"


def _edition() -> str:
    from imaging.dicom import ps315

    return ps315.table().editions


if __name__ == "__main__":
    main()
