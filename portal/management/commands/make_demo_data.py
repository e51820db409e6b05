from __future__ import annotations

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import AuthenticatorApp, User
from accounts.services import activation_code_issue, recovery_codes_generate
from audit.demo import OFFICER_NAME, build_demo_access_log
from consent.demo import build_demo_consent
from consent.models import ConsentPolicy
from consent.services import consent_policy_notices_send
from core.actor import Actor
from flags.demo import build_demo_flag
from imaging.demo import build_demo_studies
from imaging.models import Patient
from imaging.services.integrity import instances_verify
from portal import demo


class Command(BaseCommand):
    help = "Create the demo patient, officer and administrator (idempotent; refuses in production)."

    def handle(self, *args, **options) -> None:
        if settings.PRODUCTION:
            raise CommandError("make_demo_data creates accounts with published passwords; it never runs in production.")
        with transaction.atomic():
            patient_user = self._user(demo.PATIENT["email"], User.Role.PATIENT)
            patient, _ = Patient.objects.get_or_create(
                issuer=demo.PATIENT["issuer"],
                mrn=demo.PATIENT["mrn"],
                defaults={"name": demo.PATIENT["name"], "birth_date": demo.PATIENT["birth_date"]},
            )
            if patient.user_id is None:
                patient.user = patient_user
                patient.save(update_fields=["user"])
            officer = self._user(demo.OFFICER_EMAIL, User.Role.PRIVACY_OFFICER, display_name=OFFICER_NAME)
            admin = self._user(demo.ADMIN_EMAIL, User.Role.ADMINISTRATOR, is_staff=True, is_superuser=True)
            codes = {u.email: self._factor(u) for u in (patient_user, officer, admin)}
            unactivated, _ = Patient.objects.get_or_create(
                issuer=demo.UNACTIVATED["issuer"],
                mrn=demo.UNACTIVATED["mrn"],
                defaults={"name": demo.UNACTIVATED["name"], "birth_date": demo.UNACTIVATED["birth_date"]},
            )
            activation = None if unactivated.user_id else activation_code_issue(patient=unactivated)
        # Studies go through the real ingest (its own per-study transactions), once.
        if not patient.studies.exists():
            build_demo_studies(patient)
            # Fingerprint check now, as the nightly job would, so the demo shows "verified".
            instances_verify()
            # A believable year around those studies: who looked, what the patient chose, and
            # one report the privacy office is working on.
            build_demo_access_log(patient)
            build_demo_consent(patient)
            # The second policy version the patient is asked to confirm, in their notices as
            # publishing it would have put it (build_demo_consent writes the versions directly).
            latest = ConsentPolicy.objects.order_by("-version").first()
            if latest is not None and latest.version > 1:
                consent_policy_notices_send(policy=latest, patient_ids=[patient.pk])
            # The story's notice would email an example.com address (and, on the console
            # backend, bury the logins printed below): it waits in the portal only.
            build_demo_flag(patient, officer, email=False)
        secret = AuthenticatorApp.objects.filter(user=patient_user).first().secret_b32
        self.stdout.write(f"Demo logins (password for all: {demo.DEMO_PASSWORD})")
        self.stdout.write(f"  patient          {demo.PATIENT['email']}")
        self.stdout.write(f"  privacy officer  {demo.OFFICER_EMAIL}")
        self.stdout.write(f"  administrator    {demo.ADMIN_EMAIL}")
        self.stdout.write(f"  authenticator secret (all three): {secret}")
        self.stdout.write("  current code:     make demo-code")
        # Fresh on every run, and said so: only their hashes are stored, so a restart can print
        # working codes only by making new ones (the earlier ones stop working).
        self.stdout.write("  recovery codes (new on every start; earlier ones no longer work):")
        for email, fresh in codes.items():
            self.stdout.write(f"  recovery codes for {email}: {', '.join(fresh)}")
        if activation:
            self.stdout.write(
                f"Try signing up: activation code {activation} for {demo.UNACTIVATED['name']}, "
                f"born {demo.UNACTIVATED['birth_date'].isoformat()}"
            )
        if settings.EMAIL_BACKEND == "django.core.mail.backends.filebased.EmailBackend":
            self.stdout.write(f"Emails (web server and worker alike) are files in {settings.EMAIL_FILE_PATH}/")

    def _user(self, email: str, role: str, **extra) -> User:
        user = User.objects.filter(email=email).first()
        if user is None:
            user = User.objects.create_user(email, demo.DEMO_PASSWORD, role=role, **extra)
        EmailAddress.objects.get_or_create(user=user, email=email, defaults={"primary": True, "verified": True})
        return user

    def _factor(self, user: User) -> list[str]:
        """Give the demo account the published authenticator seed (once); return fresh recovery
        codes, replacing the earlier ones (README "Demo logins": every start prints them)."""
        if not AuthenticatorApp.objects.filter(user=user, confirmed=True).exists():
            device = AuthenticatorApp(user=user, name="Demo authenticator", confirmed=True)
            device.set_key(demo.DEMO_TOTP_KEY)
            device.full_clean()
            device.save()
        return recovery_codes_generate(actor=Actor.system("make_demo_data"), user=user)
