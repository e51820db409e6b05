"""Make the access log append-only in the database itself (docs/security.md §13).

Application code never updates or deletes an AccessEvent; these triggers make sure nothing else
does either (a bug, a shell, a compromised web process). Someone with rights to drop triggers can
still edit rows, and ``manage.py verify_audit`` detects that through the hash chain.
"""

from django.db import migrations


def install(apps, schema_editor):
    from audit import triggers

    triggers.install(schema_editor.connection)


def uninstall(apps, schema_editor):
    from audit import triggers

    triggers.uninstall(schema_editor.connection)


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(install, uninstall, elidable=False),
    ]
