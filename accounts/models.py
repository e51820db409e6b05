from __future__ import annotations

import time
import zoneinfo
from base64 import b32encode
from urllib.parse import quote, urlencode

from django.conf import settings
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_otp.models import Device, ThrottlingMixin, TimestampMixin
from django_otp.oath import TOTP

from core import crypto


def validate_time_zone(value: str) -> None:
    """A name in the tz database (``zoneinfo.available_timezones()``), e.g. "Europe/London"."""
    if value and value not in zoneinfo.available_timezones():
        raise ValidationError(_("Choose a time zone from the list."), code="invalid_time_zone")


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.full_clean(exclude=["password"])
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra.update(is_staff=True, is_superuser=True, role=User.Role.ADMINISTRATOR)
        return self.create_user(email, password, **extra)


class User(AbstractUser):
    """A person who signs in with an email address. Patients link to one Patient record."""

    class Role(models.TextChoices):
        PATIENT = "patient", _("Patient")
        PRIVACY_OFFICER = "privacy_officer", _("Privacy officer")
        ADMINISTRATOR = "administrator", _("Administrator")

    username = None  # type: ignore[assignment]
    email = models.EmailField(_("email address"), unique=True)
    role = models.CharField(max_length=32, choices=Role.choices, default=Role.PATIENT)
    # Patients read this in their access log and on their reports (docs/security.md §19: the
    # person, never an email address). Staff only; set by create_privacy_officer, editable in
    # the admin. Staff without one are named by role and number (``public_name``).
    display_name = models.CharField(
        _("display name"),
        max_length=100,
        blank=True,
        validators=[RegexValidator("@", inverse_match=True, message=_("A name, not an email address."))],
        help_text=_("How patients read this person's name in their access log, e.g. “Jane Okafor”."),
    )

    # The zone this person reads times in (accounts.timezones); blank: the site's TIME_ZONE.
    # Checked against the tz database at validation, not stored as choices: the list changes
    # with each tzdata release and would churn migrations.
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        validators=[validate_time_zone],
        help_text=_("Times on this site are shown in this zone."),
    )

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_ci_unique")]

    def __str__(self) -> str:
        return self.email

    @property
    def is_privacy_officer(self) -> bool:
        return self.role == self.Role.PRIVACY_OFFICER

    @property
    def public_name(self) -> str:
        """How the access log and the office's pages name this person to others, never by email
        address: staff by their display name (or "Privacy officer #12" until one is set), a
        patient as "Patient"."""
        if self.role == self.Role.PATIENT:
            return str(_("Patient"))
        return self.display_name.strip() or f"{self.get_role_display()} #{self.pk}"


class ActivationCode(models.Model):
    """A single-use code the hospital gives a patient to link a new account to their record.

    Only a keyed hash of the code is stored; the code itself is printed once.
    """

    patient = models.ForeignKey("imaging.Patient", on_delete=models.CASCADE, related_name="activation_codes")
    code_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Activation code for patient #{self.patient_id}"

    @property
    def is_usable(self) -> bool:
        return self.used_at is None and self.revoked_at is None and self.expires_at > timezone.now()


class AuthenticatorApp(TimestampMixin, ThrottlingMixin, Device):
    """A TOTP authenticator whose secret is encrypted at rest.

    django-otp's own ``TOTPDevice`` keeps its seed in clear hex in the database; docs/security.md §4
    asks that a dump reveal no seed, so this device stores a Fernet token instead and verifies
    with django-otp's own ``TOTP`` implementation (same single-use ``last_t`` rule, RFC 6238).
    """

    encrypted_key = models.TextField()
    step = models.PositiveSmallIntegerField(default=30)
    digits = models.PositiveSmallIntegerField(default=6)
    # One 30-second step either side absorbs phone clock skew (docs/security.md §2: at most one step).
    tolerance = models.PositiveSmallIntegerField(default=1)
    drift = models.SmallIntegerField(default=0)
    last_t = models.BigIntegerField(default=-1)

    class Meta(Device.Meta):
        verbose_name = "authenticator app"

    @property
    def bin_key(self) -> bytes:
        return crypto.decrypt(self.encrypted_key)

    def set_key(self, key: bytes) -> None:
        self.encrypted_key = crypto.encrypt(key)

    @property
    def secret_b32(self) -> str:
        """The seed as authenticator apps take it when typed in by hand."""
        return b32encode(self.bin_key).decode().rstrip("=")

    @property
    def config_url(self) -> str:
        """The otpauth:// URI for the QR code (Google's Key Uri Format)."""
        issuer = settings.OTP_TOTP_ISSUER.replace(":", "")
        label = quote(f"{issuer}:{self.user.email}")
        params = urlencode(
            {"secret": self.secret_b32, "issuer": issuer, "algorithm": "SHA1", "digits": self.digits, "period": self.step}
        )
        return f"otpauth://totp/{label}?{params}"

    def get_throttle_factor(self) -> int:
        return 1

    def matching_step(self, token) -> int | None:
        """The time step ``token`` is the code of (within ``tolerance``, and later than the last
        code used, so a code works once), or None. Reads only: ``verify_token`` records the use;
        enrolment checks a key that has no row yet (``accounts.services``)."""
        token = str(token).strip().replace(" ", "")
        # isascii: str.isdigit() also accepts digits such as "²" that int() cannot parse.
        if not (token.isascii() and token.isdigit() and len(token) == self.digits):
            return None
        totp = TOTP(self.bin_key, self.step, 0, self.digits, self.drift)
        totp.time = time.time()
        if totp.verify(int(token), self.tolerance, self.last_t + 1):
            return totp.t()
        return None

    def verify_token(self, token) -> bool:
        allowed, _ = self.verify_is_allowed()
        if not allowed:
            return False
        step = self.matching_step(token)
        if step is not None:
            self.last_t = step
            self.throttle_reset(commit=False)
            self.set_last_used_timestamp(commit=False)
            self.save()
            return True
        self.throttle_increment(commit=True)
        return False


class RecoveryCodeSet(ThrottlingMixin, Device):
    """The user's single-use recovery codes, kept as keyed hashes (never in clear)."""

    class Meta(Device.Meta):
        verbose_name = "recovery codes"

    def get_throttle_factor(self) -> int:
        return 1

    def verify_token(self, token) -> bool:
        allowed, _ = self.verify_is_allowed()
        if not allowed:
            return False
        normalized = normalize_recovery_code(str(token))
        deleted, _ = self.codes.filter(code_hash=crypto.keyed_hash(normalized, purpose="recovery")).delete()
        if deleted:
            self.throttle_reset(commit=True)
            return True
        self.throttle_increment(commit=True)
        return False


def normalize_recovery_code(value: str) -> str:
    return "".join(ch for ch in value.lower() if ch.isalnum())


class RecoveryCode(models.Model):
    device = models.ForeignKey(RecoveryCodeSet, on_delete=models.CASCADE, related_name="codes")
    code_hash = models.CharField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "code_hash"], name="recovery_code_unique")]

    def __str__(self) -> str:
        return f"Recovery code #{self.pk}"


class SignInEvent(models.Model):
    """One completed sign-in (password and second factor), shown on the security page."""

    class Method(models.TextChoices):
        TOTP = "totp", _("Authenticator app")
        RECOVERY_CODE = "recovery_code", _("Recovery code")
        PASSKEY = "passkey", _("Passkey")
        ENROLMENT = "enrolment", _("New authenticator app")

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="sign_ins")
    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    method = models.CharField(max_length=32, choices=Method.choices)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-occurred_at"]
        indexes = [models.Index(fields=["user", "-occurred_at"])]

    def __str__(self) -> str:
        return f"{self.user} signed in by {self.method} at {self.occurred_at:%Y-%m-%d %H:%M}"
