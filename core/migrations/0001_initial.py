# ServiceAccount moved here from accounts (API token auth is in core). State only: the table,
# accounts_serviceaccount, and its rows stay exactly as they are.

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('accounts', '0003_service_accounts'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='ServiceAccount',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=100, unique=True)),
                        ('organization', models.CharField(max_length=200)),
                        ('actor_type', models.CharField(choices=[('service', 'Hospital system'), ('clinician', 'Clinical system'), ('ai_vendor', 'AI vendor'), ('researcher', 'Research organisation')], default='service', max_length=16)),
                        ('scopes', models.JSONField(default=list)),
                        ('token_prefix', models.CharField(help_text="The token's first characters, to recognise it.", max_length=12)),
                        ('token_hash', models.CharField(max_length=64, unique=True)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('last_used_at', models.DateTimeField(blank=True, null=True)),
                        ('revoked_at', models.DateTimeField(blank=True, null=True)),
                    ],
                    options={
                        'db_table': 'accounts_serviceaccount',
                        'ordering': ['name'],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
