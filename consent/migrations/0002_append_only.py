"""Make consent decisions append-only in the database itself: a change of mind is a new row."""

from django.db import migrations


def install(apps, schema_editor):
    from consent import triggers

    triggers.install(schema_editor.connection)


def uninstall(apps, schema_editor):
    from consent import triggers

    triggers.uninstall(schema_editor.connection)


class Migration(migrations.Migration):

    dependencies = [
        ("consent", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(install, uninstall, elidable=False),
    ]
