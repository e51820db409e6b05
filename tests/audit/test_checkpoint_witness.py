"""Witnessed checkpoints (docs/security.md §20): made every few minutes and at first start, chained,
append-only, every one verified (also with --mrn), and outside copies (an exported file, a
patient's receipt) that catch an insider who rebuilds the whole log consistently.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from audit import merkle, triggers
from audit.checkpoints import (
    checkpoint_create,
    stored_hash_range,
    tree_scan,
)
from audit.models import AccessEvent, AuditCheckpoint, AuditLeaf, AuditTreeTile, ChainHead
from audit.services import event_hash
from audit.tasks import create_checkpoint
from tests.audit.conftest import clinician_view
from tests.conftest import login_verified, wait_for
from tests.factories import PatientFactory

ROOT = Path(__file__).resolve().parents[2]
RECEIPT = "/access-log/receipt.json"


def verify(*args: str) -> str:
    out = StringIO()
    call_command("verify_audit", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def broken(*args: str) -> str:
    with pytest.raises(CommandError) as exc:
        verify(*args)
    return str(exc.value)


def _sql(statement: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


class Insider:
    """Database superuser rights: drops every append-only trigger, does its work, puts them back."""

    def __enter__(self):
        _sql("SET CONSTRAINTS ALL IMMEDIATE")
        triggers.uninstall(connection)
        triggers.uninstall_checkpoint_triggers(connection)
        return self

    def __exit__(self, *exc):
        triggers.install(connection)
        triggers.install_checkpoint_triggers(connection)
        _sql("SET CONSTRAINTS ALL DEFERRED")


# --- When checkpoints are made ----------------------------------------------------------------


def test_beat_makes_a_checkpoint_every_few_minutes():
    entry = settings.CELERY_BEAT_SCHEDULE["audit-create-checkpoint"]
    assert entry["task"] == "audit.create_checkpoint"
    assert settings.AUDIT_CHECKPOINT_MINUTES == 5
    assert entry["schedule"] == 5 * 60  # seconds: not the old daily crontab


@pytest.mark.parametrize("value", ["five", "0", "-3", "2000"])
def test_a_bad_checkpoint_interval_stops_the_process(value):
    env = {**os.environ, "AUDIT_CHECKPOINT_MINUTES": value}
    out = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # noqa: S603
    assert out.returncode != 0
    assert "AUDIT_CHECKPOINT_MINUTES must be" in out.stderr


@pytest.mark.django_db
def test_the_task_skips_an_unchanged_log_and_first_start_makes_only_the_first(record, make_chain):
    create_checkpoint(only_if_none=True)
    assert AuditCheckpoint.objects.count() == 1  # a new install: one, even with no events
    create_checkpoint(only_if_none=True)
    assert AuditCheckpoint.objects.count() == 1
    make_chain(record, 2)
    create_checkpoint()
    assert AuditCheckpoint.objects.count() == 2
    create_checkpoint()  # nothing new: the last one still covers everything
    assert AuditCheckpoint.objects.count() == 2
    assert AuditCheckpoint.objects.order_by("-pk").first().tree_size == 2


def test_a_worker_starting_on_a_new_install_makes_the_first_checkpoint(celery_worker_process):
    # No checkpoint until 02:30 on a new install was the finding: now the first worker makes one.
    wait_for(lambda: AuditCheckpoint.objects.exists(), what="the first checkpoint")
    assert verify().startswith("OK")


# --- The chain of checkpoints, append-only ------------------------------------------------------


@pytest.mark.django_db
def test_each_checkpoint_names_the_one_before(record, make_chain):
    first = checkpoint_create()
    make_chain(record, 1)
    second = checkpoint_create()
    assert json.loads(first.statement)["previous"] is None
    assert json.loads(second.statement)["previous"] == __import__("hashlib").sha256(first.statement.encode()).hexdigest()
    assert json.loads(second.statement)["tree_size"] == 1


@pytest.mark.django_db
def test_the_checkpoint_tables_are_append_only(record, make_chain):
    make_chain(record, 1)
    checkpoint = checkpoint_create()
    for statement in (
        ("UPDATE audit_auditcheckpoint SET root = %s WHERE id = %s", ["0" * 64, checkpoint.pk]),
        ("DELETE FROM audit_auditcheckpoint", []),
        ("DELETE FROM audit_auditleaf", []),
        ("UPDATE audit_auditleaf SET seq = 9", []),
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            _sql(*statement)
    assert AuditCheckpoint.objects.count() == 1 and AuditLeaf.objects.count() == 1


@pytest.mark.django_db
def test_a_dropped_checkpoint_trigger_fails_verify(record, make_chain):
    make_chain(record, 1)
    checkpoint_create()
    triggers.CHECKPOINT_TABLES[0].uninstall(connection)
    assert "audit_auditcheckpoint" in broken()


@pytest.mark.django_db
def test_a_checkpoint_removed_from_the_middle_is_found(record, make_chain):
    for _ in range(3):
        make_chain(record, 1)
        checkpoint_create()
    middle = AuditCheckpoint.objects.order_by("pk")[1]
    with Insider():
        _sql("DELETE FROM audit_auditcheckpoint WHERE id = %s", [middle.pk])
    assert "does not name the checkpoint before it" in broken()


@pytest.mark.django_db
def test_every_checkpoint_is_verified_not_only_the_latest(record, other_record, make_chain):
    make_chain(record, 2)
    first = checkpoint_create()
    make_chain(other_record, 1)
    checkpoint_create()
    assert verify().startswith("OK")
    # The first checkpoint's stored heads no longer match what it signed: only a check of every
    # checkpoint sees it (the newest is intact).
    with Insider():
        _sql("UPDATE audit_auditcheckpoint SET heads = %s WHERE id = %s",
             [json.dumps({str(record.pk): [1, "0" * 64]}), first.pk])
    assert "do not match the signed digest" in broken()


def _rewrite_chain(patient, *, drop: set[int]) -> None:
    """Delete events ``drop`` (by seq) of the patient's chain, renumber and rehash the rest, and
    set the chain head to the new end: plain chain verification cannot tell."""
    with Insider():
        AuditLeaf.objects.filter(patient=patient).delete()
        AccessEvent.objects.filter(patient=patient, seq__in=drop).delete()
        prev = "0" * 64
        for seq, event in enumerate(AccessEvent.objects.filter(patient=patient).order_by("seq"), start=1):
            event.seq, event.prev_hash = seq, prev
            event.hash = prev = event_hash(event)
            AccessEvent.objects.filter(pk=event.pk).update(seq=seq, prev_hash=event.prev_hash, hash=event.hash)
        ChainHead.objects.filter(patient=patient).update(seq=seq, last_hash=prev)


@pytest.mark.django_db
def test_verify_with_mrn_checks_the_checkpoints_too(record, other_record, make_chain):
    make_chain(record, 4)
    make_chain(other_record, 2)
    checkpoint_create()
    _rewrite_chain(record, drop={2})
    message = broken("--mrn", record.mrn, "--issuer", record.issuer)
    assert f"patient {record.pk}: event 4, signed in the checkpoint, is missing" in message
    # The other patient's chain is intact, but the proof of it into the signed tree needs the
    # leaves the insider removed with the events.
    assert "the tree lacks leaves" in broken("--mrn", other_record.mrn, "--issuer", other_record.issuer)


# --- The tree as stored ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_tiles_serve_proofs_and_agree_with_the_events(record):
    for _ in range(600):
        clinician_view(record)
    checkpoint = checkpoint_create()
    assert AuditTreeTile.objects.count() == 600 // AuditTreeTile.TILE_SIZE
    scan = tree_scan({600})
    assert scan.problems == [] and scan.roots[600].hex() == checkpoint.root
    assert stored_hash_range(0, 600) == scan.roots[600]
    for index in (0, 255, 256, 511, 599):
        proof = merkle.inclusion_proof(index, 600, stored_hash_range)
        leaf = AccessEvent.objects.get(pk=AuditLeaf.objects.get(index=index).event_id)
        assert merkle.verify_inclusion(index, 600, merkle.leaf_hash(bytes.fromhex(leaf.hash)), proof, scan.roots[600])
    with Insider():
        _sql("UPDATE audit_audittreetile SET hash = %s WHERE index = 1", ["0" * 64])
    assert "tile 1 of the tree does not match its leaves" in broken()


# --- The patient's receipt -----------------------------------------------------------------------


@pytest.fixture
def own(patient):
    return patient.patient


def test_the_page_offers_the_receipt_in_one_plain_sentence(patient_client, own):
    page = patient_client.get("/access-log/").content.decode()
    assert 'href="/access-log/receipt.json"' in page
    assert "Receipt of your access log" in page
    assert "anyone can later prove that no entry up to today has been removed or changed" in page


def test_the_receipt_is_an_audited_download_that_verifies(patient_client, own, other_patient, tmp_path):
    clinician_view(own)
    clinician_view(other_patient.patient)
    response = patient_client.get(RECEIPT)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith('attachment; filename="access-log-receipt-')
    receipt = json.loads(response.content)
    download = AccessEvent.objects.filter(patient=own).order_by("-seq").first()
    assert (download.action, download.details) == ("download", {"page": "access_log_receipt"})
    # The receipt covers the download itself, and names no other patient.
    assert receipt["head"] == {"seq": download.seq, "hash": download.hash}
    assert set(receipt["checkpoint"]) == {"statement", "signature", "signature_algorithm", "public_key_pem"}
    statement = json.loads(receipt["checkpoint"]["statement"])
    assert merkle.verify_inclusion(
        receipt["index"], statement["tree_size"], merkle.leaf_hash(bytes.fromhex(download.hash)),
        [bytes.fromhex(h) for h in receipt["inclusion_proof"]], bytes.fromhex(statement["root"]),
    )
    path = tmp_path / "receipt.json"
    path.write_bytes(response.content)
    assert "The receipt" in verify("--receipt", str(path))
    # A receipt edited by hand no longer proves anything.
    receipt["inclusion_proof"][0] = "0" * 64
    path.write_text(json.dumps(receipt))
    assert "the file was altered" in broken("--receipt", str(path))


def test_anonymous_is_sent_to_login(client):
    response = client.get(RECEIPT)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_an_officer_has_no_receipt_and_nothing_is_written(client, officer):
    login_verified(client, officer)
    assert client.get(RECEIPT).status_code == 404
    assert not AccessEvent.objects.exists() and not AuditCheckpoint.objects.exists()


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_wrong_method(patient_client, own, method):
    assert getattr(patient_client, method)(RECEIPT).status_code == 405
    assert not AccessEvent.objects.filter(patient=own).exists()


# --- Bad input --------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("option", ["--checkpoints", "--receipt"])
@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), ("{not json", "is not JSON"), (b"\xff\xfe", "cannot be read"),
     ('"a string"', "is not")],
)
def test_bad_files_are_clear_errors(tmp_path, option, content, message):
    path = tmp_path / "file.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert message in broken(option, str(path))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("option", "content", "message"),
    [("--checkpoints", {"statement": "x"}, "is not a list of checkpoints"),
     ("--checkpoints", [{"statement": "{}", "signature": "00"}], "signature does not verify"),
     ("--receipt", [], "is not an access-log receipt"),
     ("--receipt", {"format": "other"}, "not an access-log receipt"),
     ("--receipt", {"format": "lightbox-access-log-receipt/1", "patient": 1}, "lacks or garbles a field")],
)
def test_wrong_formats_are_clear_errors(tmp_path, option, content, message):
    path = tmp_path / "file.json"
    path.write_text(json.dumps(content))
    assert message in broken(option, str(path))


# --- The insider -----------------------------------------------------------------------------------


def test_an_insider_who_rebuilds_everything_is_caught_by_the_outside_copies(patient_client, own, tmp_path):
    """Issue's finding 2, played through: with the triggers dropped, the insider deletes two of a
    patient's events, renumbers and rehashes the chain, fixes the chain head, empties the
    checkpoint tables and signs new checkpoints with the real key, then restores the triggers."""
    bystander = PatientFactory()
    for _ in range(5):
        clinician_view(own)
    clinician_view(bystander)
    # The patient keeps a receipt (through the real page); an outside party keeps the checkpoints.
    receipt = tmp_path / "receipt.json"
    receipt.write_bytes(patient_client.get(RECEIPT).content)
    covered = json.loads(receipt.read_text())["head"]["seq"]
    assert covered == 6
    exported = tmp_path / "checkpoints.json"
    call_command("export_audit_checkpoints", "--create", "--out", str(exported), stderr=StringIO())
    assert verify("--checkpoints", str(exported), "--receipt", str(receipt)).startswith("OK")

    _rewrite_chain(own, drop={2, 3})
    with Insider():
        AuditTreeTile.objects.all().delete()
        AuditLeaf.objects.all().delete()
        AuditCheckpoint.objects.all().delete()
        checkpoint_create()
        checkpoint_create()

    # The database alone agrees with itself...
    assert verify().startswith("OK")
    # ...but not with what was kept outside it.
    message = broken("--checkpoints", str(exported))
    assert "is missing from the database" in message
    assert f"patient {own.pk}: event {covered}, signed in the checkpoint, is missing" in message
    assert "covers 7 events, but the log's tree has fewer: events were removed" in message
    message = broken("--receipt", str(receipt))
    assert f"patient {own.pk}: event {covered}, the last entry the receipt covers, is missing (the log now ends at event 4)" in message
    assert "which the receipt carries, is missing from the database" in message


def test_an_event_committed_late_with_a_smaller_id_joins_the_tree_at_its_end(transactional_db):
    """Ids are given at INSERT, commits come later: an event can commit after a checkpoint that
    covered a larger id. It must still enter the tree (at its end), never be skipped."""
    import threading

    slow, fast = PatientFactory(), PatientFactory()
    inserted, release = threading.Event(), threading.Event()
    late = {}

    def slow_writer():
        try:
            with transaction.atomic():
                late["event"] = clinician_view(slow)
                inserted.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert inserted.wait(30)
    early = clinician_view(fast)  # a larger id, committed first
    assert early.pk > late["event"].pk
    first = checkpoint_create()
    assert first.tree_size == 1
    release.set()
    thread.join(30)
    second = checkpoint_create()
    assert second.tree_size == 2
    assert AuditLeaf.objects.get(index=1).event_id == late["event"].pk
    assert verify().startswith("OK")
