"""Flags' notices move to the notification centre (``notices.Notice``): every row is copied,
read or not, then flags' own table goes. A report update links to its report; an incident notice
to "My reports", where its text is shown."""

from django.db import migrations


def copy_notices(apps, schema_editor):
    Old = apps.get_model("flags", "Notice")
    New = apps.get_model("notices", "Notice")
    rows = []
    for old in Old.objects.order_by("pk").iterator():
        if old.incident_id is not None:
            kind, key, link = "incident", f"incident:{old.incident_id}", "/flags/"
        else:
            kind, key, link = "report_update", f"flag:{old.flag_id}", f"/flags/{old.flag_id}/"
        rows.append(New(
            patient_id=old.patient_id, kind=kind, key=key, subject=old.subject, body=old.body, link=link,
            created_at=old.created_at, read_at=old.read_at,
        ))
    New.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)


def copy_back(apps, schema_editor):
    Old = apps.get_model("flags", "Notice")
    New = apps.get_model("notices", "Notice")
    for new in New.objects.filter(kind__in=["report_update", "incident"]).order_by("pk").iterator():
        ref = int(new.key.split(":")[1])
        Old.objects.create(
            patient_id=new.patient_id, flag_id=ref if new.kind == "report_update" else None,
            incident_id=ref if new.kind == "incident" else None, subject=new.subject, body=new.body,
            created_at=new.created_at, read_at=new.read_at,
        )


class Migration(migrations.Migration):

    dependencies = [
        ("flags", "0001_initial"),
        ("notices", "0001_notification_centre"),
    ]

    operations = [
        migrations.RunPython(copy_notices, copy_back),
        migrations.DeleteModel(name="Notice"),
    ]
