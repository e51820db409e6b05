# ServiceAccount now belongs to core (core/migrations/0001_initial.py). State only: the table stays.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0003_service_accounts'),
        ('core', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name='ServiceAccount')],
            database_operations=[],
        ),
    ]
