"""Signed checkpoints, their export, verify_audit's use of them, import_access_events, the demo."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from audit import triggers
from audit.checkpoints import checkpoint_create, checkpoint_verify
from audit.demo import build_demo_access_log
from audit.models import AccessEvent, MonthlyAccessCount
from audit.services import chain_verify
from imaging.models import Study
from tests.audit.conftest import make_study

pytestmark = pytest.mark.django_db


def test_checkpoint_is_signed_and_verifiable_outside(client, record, other_record, make_chain, tmp_path):
    make_chain(record, 3)
    make_chain(other_record, 2)
    checkpoint = checkpoint_create()
    assert (checkpoint.chains, checkpoint.events) == (2, 5)
    assert checkpoint_verify(checkpoint) == []
    out = tmp_path / "checkpoints.json"
    call_command("export_audit_checkpoints", "--out", str(out), "--latest")
    [doc] = json.loads(out.read_text())
    # Someone outside checks with the key published at /.well-known/ only.
    pem = client.get("/.well-known/lightbox-signing-key.pem").content
    load_pem_public_key(pem).verify(bytes.fromhex(doc["signature"]), doc["statement"].encode())
    statement = json.loads(doc["statement"])
    assert statement["chains"] == 2 and statement["events"] == 5
    assert doc["heads"][str(record.pk)][0] == 3
    # A forged head list no longer matches the signed digest.
    doc["heads"][str(record.pk)] = [3, "0" * 64]
    assert "do not match the signed digest" in checkpoint_verify(doc)[0]


def test_rewritten_history_is_caught_by_the_checkpoint(record, make_chain):
    events = make_chain(record, 3)
    checkpoint = checkpoint_create()
    # An owner who disables the triggers and rebuilds the whole chain consistently...
    with connection.cursor() as cursor:
        triggers.uninstall(connection)
        cursor.execute("UPDATE audit_accessevent SET hash = %s WHERE id = %s", ["f" * 64, events[-1].pk])
        triggers.install(connection)
    problems = checkpoint_verify(checkpoint)
    assert problems and "history rewritten" in problems[0]
    with pytest.raises(CommandError, match="chain"):
        call_command("verify_audit")


def test_verify_audit_reports_the_checkpoint(record, make_chain, capsys):
    make_chain(record, 2)
    checkpoint_create()
    call_command("verify_audit")
    assert "Signed checkpoint" in capsys.readouterr().out


def test_export_without_checkpoints_is_a_clear_error():
    with pytest.raises(CommandError, match="No checkpoints yet"):
        call_command("export_audit_checkpoints")


def test_monthly_counts_follow_record_access(record, make_chain):
    make_chain(record, 4)
    assert sum(MonthlyAccessCount.objects.filter(patient=record).values_list("count", flat=True)) == 4


# --- import_access_events ----------------------------------------------------------------------


def test_import_csv_is_idempotent_and_rejects_unknown_patients(record, tmp_path, capsys):
    study = make_study(record)
    when = (timezone.now() - dt.timedelta(days=30)).isoformat()
    path = tmp_path / "events.csv"
    path.write_text(
        "source_event_id,occurred_at,issuer,mrn,study_uid,accession,actor_type,actor_name,actor_ref,organization,role,purpose,action,outcome\n"
        f"1,{when},{record.issuer},{record.mrn},{study.study_uid},,clinician,Dr A,,Mercy,Radiologist,treatment,view,success\n"
        f"2,{when},{record.issuer},{record.mrn},,,researcher,Broker,,Research Net,,research,export,\n"
        f"3,{when},{record.issuer},NOBODY,,,clinician,Dr B,,Mercy,,treatment,view,\n"
    )
    with pytest.raises(CommandError, match="1 events were rejected"):
        call_command("import_access_events", str(path), "--sender", "old-ehr")
    output = capsys.readouterr()
    assert "2 imported, 0 already present, 1 rejected" in output.out
    assert "row 3 (3): rejected: unknown patient" in output.err
    assert AccessEvent.objects.filter(patient=record, source="import").count() == 2
    with pytest.raises(CommandError):
        call_command("import_access_events", str(path), "--sender", "old-ehr")
    assert "0 imported, 2 already present" in capsys.readouterr().out
    assert chain_verify(record).ok


def test_import_json(record, tmp_path, capsys):
    path = tmp_path / "events.json"
    when = (timezone.now() - dt.timedelta(days=3)).isoformat()
    path.write_text(json.dumps({"events": [{"source_event_id": "x", "occurred_at": when, "patient": {"issuer": record.issuer, "mrn": record.mrn},
                                            "purpose": "operations", "action": "query"}]}))
    call_command("import_access_events", str(path), "--sender", "pacs", "--organization", "St. Example Hospital")
    assert "1 imported" in capsys.readouterr().out
    assert AccessEvent.objects.get(patient=record).organization == "St. Example Hospital"


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [("{bad", "e.json", "cannot be read"), ("a,b\n1,2\n", "e.csv", "header lacks"), ("[]", "e.json", "expected"), ("x", "e.txt", "cannot tell")],
)
def test_import_bad_files_are_clear_errors(db, tmp_path, content, name, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(CommandError, match=message):
        call_command("import_access_events", str(path), "--sender", "s")


def test_import_missing_file(db):
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_access_events", "/nonexistent.csv", "--sender", "s")


# --- Demo ------------------------------------------------------------------------------------


def test_demo_year(patient):
    record = patient.patient
    for i in range(3):
        make_study(record)
    # The demo's AI vendor triages chest radiographs only (audit.demo.ai_may_read).
    Study.objects.create(patient=record, study_uid="1.2.826.0.1.3680043.10.98.1", modalities="DX", description="XR CHEST",
                         study_date=timezone.localdate() - dt.timedelta(days=200))
    written = build_demo_access_log(record)
    assert 40 <= written <= 80
    events = AccessEvent.objects.filter(patient=record)
    kinds = set(events.values_list("actor_type", flat=True))
    assert {"clinician", "ai_vendor", "researcher", "privacy_office", "patient"} <= kinds
    assert events.filter(organization="Mercy University Hospital").exists()
    assert not events.filter(actor_name__contains="@").exists(), "patients read names, never email addresses"
    oldest = events.order_by("occurred_at").first().occurred_at
    assert timezone.now() - oldest > dt.timedelta(days=300)
    assert timezone.now() - oldest < dt.timedelta(days=366)
    assert chain_verify(record).ok
