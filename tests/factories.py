from __future__ import annotations

import datetime as dt
import os
import time

import factory
from allauth.account.models import EmailAddress
from django_otp.oath import TOTP

from accounts.models import AuthenticatorApp, User
from imaging.models import Patient

PASSWORD = "correct horse battery staple 1"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"person{n}@example.org")
    role = User.Role.PATIENT
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def verified_email(self, create, extracted, **kwargs):
        if create:
            self.save()
            EmailAddress.objects.create(user=self, email=self.email, primary=True, verified=extracted is not False)


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    issuer = "STEXAMPLE"
    mrn = factory.Sequence(lambda n: f"MRN{n:06d}")
    name = factory.Faker("name")
    birth_date = dt.date(1980, 1, 31)


class AuthenticatorAppFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AuthenticatorApp
        skip_postgeneration_save = True

    user = factory.SubFactory(UserFactory)
    name = "Phone"
    confirmed = True
    encrypted_key = ""

    @factory.post_generation
    def key(self, create, extracted, **kwargs):
        self.set_key(extracted or os.urandom(20))
        if create:
            self.save()


def totp_code(device: AuthenticatorApp, steps: int = 0) -> str:
    """The code an authenticator app would show now (or ``steps`` periods away)."""
    totp = TOTP(device.bin_key, device.step, 0, device.digits, 0)
    totp.time = time.time() + steps * device.step
    return f"{totp.token():0{device.digits}d}"


def actor_of(user, *, reauthenticated: bool = True, ip: str = "127.0.0.1", user_agent: str = "pytest"):
    """The Actor a signed-in ``user``'s request would carry (``portal.actors``), for tests that
    call services and selectors directly. ``reauthenticated``: the password was just re-entered."""
    from django.utils import timezone

    from portal.actors import actor_for_user

    return actor_for_user(
        user, ip=ip, user_agent=user_agent, reauthenticated_at=timezone.now() if reauthenticated else None
    )
