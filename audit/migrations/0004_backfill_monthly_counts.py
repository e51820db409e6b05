"""Fill the monthly counts from the events recorded before they existed."""

from django.db import migrations


def backfill(apps, schema_editor):
    AccessEvent = apps.get_model("audit", "AccessEvent")
    MonthlyAccessCount = apps.get_model("audit", "MonthlyAccessCount")
    from collections import Counter

    from audit.services import month_of

    counts: Counter = Counter()
    rows = AccessEvent.objects.values_list("patient_id", "occurred_at", "actor_type", "organization", "purpose")
    for patient_id, occurred_at, actor_type, organization, purpose in rows.iterator(chunk_size=5000):
        counts[(patient_id, month_of(occurred_at), actor_type, organization, purpose)] += 1
    MonthlyAccessCount.objects.bulk_create(
        [
            MonthlyAccessCount(patient_id=p, month=m, actor_type=a, organization=o, purpose=u, count=n)
            for (p, m, a, o, u), n in counts.items()
        ],
        batch_size=1000,
    )


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_auditcheckpoint_monthlyaccesscount_and_more")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
