"""Lightbox settings: one module, driven by environment variables.

The embedded default (SQLite, Celery's filesystem transport, local files, console email) needs
no variables at all. ``LIGHTBOX_ENV=production`` turns on strict mode: the process refuses to
start without its secrets and with anything but HTTPS-grade cookies and headers.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
import dj_email_url
from celery.schedules import crontab
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from core.env import envbool, envint, envlist, envstr, require_protected_service_url
from core.keys import embedded_secret

BASE_DIR = Path(__file__).resolve().parent.parent
LIGHTBOX_ENV = envstr("LIGHTBOX_ENV", "embedded")
if LIGHTBOX_ENV not in {"embedded", "production", "test"}:
    raise ImproperlyConfigured("LIGHTBOX_ENV must be 'embedded', 'test' or 'production'")
PRODUCTION = LIGHTBOX_ENV == "production"

DATA_DIR = Path(envstr("LIGHTBOX_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
KEYS_DIR = DATA_DIR / "keys"


def _required(name: str) -> str:
    value = envstr(name)
    if not value:
        raise ImproperlyConfigured(f"{name} must be set when LIGHTBOX_ENV=production")
    return value


if PRODUCTION:
    SECRET_KEY = _required("SECRET_KEY")
    if len(SECRET_KEY) < 50 or SECRET_KEY.startswith("django-insecure"):
        raise ImproperlyConfigured("SECRET_KEY must be a random string of at least 50 characters")
    FIELD_ENCRYPTION_KEYS = envlist("FIELD_ENCRYPTION_KEY")
    if not FIELD_ENCRYPTION_KEYS:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY must be set when LIGHTBOX_ENV=production")
    SIGNING_KEY_FILE = Path(_required("SIGNING_KEY_FILE"))
    if not SIGNING_KEY_FILE.is_file():
        raise ImproperlyConfigured(f"SIGNING_KEY_FILE {SIGNING_KEY_FILE} does not exist")
    ALLOWED_HOSTS = envlist("ALLOWED_HOSTS")
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS must be set when LIGHTBOX_ENV=production")
else:
    SECRET_KEY = envstr("SECRET_KEY") or embedded_secret(KEYS_DIR / "secret_key", "django")
    # Comma-separated Fernet keys; the first encrypts, all decrypt (key rotation).
    FIELD_ENCRYPTION_KEYS = envlist("FIELD_ENCRYPTION_KEY") or [
        embedded_secret(KEYS_DIR / "field_encryption_key", "fernet")
    ]
    SIGNING_KEY_FILE = Path(envstr("SIGNING_KEY_FILE") or KEYS_DIR / "signing_ed25519.pem")
    embedded_secret(SIGNING_KEY_FILE, "ed25519")
    ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])

DEBUG = envbool("DEBUG", False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must be off when LIGHTBOX_ENV=production")
SITE_URL = envstr("SITE_URL", "http://localhost:8000")
SITE_NAME = envstr("SITE_NAME", "Lightbox")
HOSPITAL_NAME = envstr("HOSPITAL_NAME", "St. Example Hospital")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "django.contrib.humanize",
    "django_otp",
    "django_otp_webauthn",
    "allauth",
    "allauth.account",
    "allauth.usersessions",
    "csp",
    "core",
    "portal",
    "accounts",
    "imaging",
    "notices",
    "audit",
    "consent",
    "exports",
    "flags",
    "sharing",
    "proxies",
]

MIDDLEWARE = [
    "portal.middleware.RequestIdMiddleware",
    "portal.middleware.NoStoreForSignedInMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Times in the signed-in person's own time zone (their account page), with the zone shown.
    "accounts.timezones.TimeZoneMiddleware",
    "accounts.middleware.AbsoluteSessionTimeoutMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "accounts.middleware.SecondFactorGateMiddleware",
    "portal.middleware.ActorMiddleware",
    # What a proxy's grant lets it open, page by page (docs/security.md §28).
    "proxies.middleware.ProxyScopeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    # In place of allauth's UserSessionsMiddleware: the session's activity once a minute.
    "accounts.middleware.SessionActivityMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
                "portal.context_processors.site",
                "portal.context_processors.navigation",
                "proxies.context_processors.switcher",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# Persistent connections: a new PostgreSQL connection per request cost about a quarter of a
# page's time under load (issue 18). 60 s in production; health checks (Django 5.2) replace a
# connection the server closed before a request uses it. 0 elsewhere (tests, the embedded SQLite).
DATABASES = {
    "default": dj_database_url.parse(
        envstr("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'lightbox.sqlite3'}",
        conn_max_age=envint("DB_CONN_MAX_AGE", 60 if PRODUCTION else 0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server and the Celery worker read while the other writes.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;",
        "transaction_mode": "IMMEDIATE",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (rate limits, worker heartbeat) --------------------------------------------------
# Production needs Redis: the file cache would give every host its own rate limits and sessions
# (docs/security.md §3), and a Redis reachable without a password is refused (§18).
REDIS_URL = _required("REDIS_URL") if PRODUCTION else envstr("REDIS_URL")
if PRODUCTION:
    require_protected_service_url("REDIS_URL", REDIS_URL)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": envstr("CACHE_KEY_PREFIX", "lightbox"),
        }
    }
else:
    # The embedded default runs a web server and a worker as separate processes; a file cache is
    # the simplest store both can see (locmem would give each process its own rate limits).
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
        }
    }

# --- Accounts ---------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "allauth.account.auth_backends.AuthenticationBackend",
    "django_otp_webauthn.backends.WebAuthnBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    # NIST SP 800-63B: at least 8; we ask 10 because these accounts guard health records.
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
# Each role's own start page (portal.views.start): patients their scans, officers the queue.
LOGIN_REDIRECT_URL = "portal-start"
LOGOUT_REDIRECT_URL = "account_login"
SITE_ID = 1

ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_EMAIL_VERIFICATION_BY_CODE_ENABLED = False
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = False
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
# Links in allauth's emails from SITE_URL, not from the request's host (core/links.py).
ACCOUNT_ADAPTER = "portal.adapters.AccountAdapter"
ACCOUNT_SESSION_REMEMBER = False
ACCOUNT_CHANGE_EMAIL = True
ACCOUNT_EMAIL_NOTIFICATIONS = True
ACCOUNT_EMAIL_SUBJECT_PREFIX = f"[{SITE_NAME}] "
ACCOUNT_REAUTHENTICATION_REQUIRED = True
# docs/security.md §6: sensitive actions need a password re-entry no older than five minutes.
ACCOUNT_REAUTHENTICATION_TIMEOUT = 300
ACCOUNT_FORMS = {"signup": "accounts.forms.ActivationSignupForm"}
ACCOUNT_RATE_LIMITS = {
    # Wrong passwords: 5 per 5 minutes per account stops online guessing without locking a
    # patient out for long; 20 per minute per IP slows spraying across many accounts.
    "login_failed": "20/m/ip,5/5m/key",
    "login": "30/m/ip",
    "signup": "20/h/ip",
    "reset_password": "20/m/ip,5/5m/key",
    "reset_password_from_key": "20/m/ip",
    "confirm_email": "3/10m/key",
    "change_password": "5/m/user",
    "manage_email": "10/m/user",
    "reauthenticate": "10/m/user",
    # Second-factor codes (ours, consumed in accounts.services): 6 digits = 10^6 codes; at
    # 5 tries per 5 minutes per account a guess succeeds in ~3 years on average.
    "mfa_code": "20/m/ip,5/5m/user",
    # Activation codes are 12 characters of base32 (60 bits); 10 tries an hour per IP.
    "activation": "10/h/ip",
}
ALLAUTH_TRUSTED_PROXY_COUNT = envint("TRUSTED_PROXY_COUNT", 0)
ALLAUTH_TRUSTED_CLIENT_IP_HEADER = envstr("TRUSTED_CLIENT_IP_HEADER") or None
USERSESSIONS_TRACK_ACTIVITY = True

# Issuer (assigning authority) for Patient IDs in files that name none.
LIGHTBOX_DEFAULT_ISSUER = envstr("LIGHTBOX_DEFAULT_ISSUER", "LOCAL")

# Activation codes expire: a letter sits in a drawer; two weeks is long enough to use it.
ACTIVATION_CODE_TTL_DAYS = envint("ACTIVATION_CODE_TTL_DAYS", 14)
# Growing up (proxies.services.grant_allows): from PROXY_AGE_RESTRICTED a parent's or guardian's
# grant no longer shows the access log or consent unless the young person agrees; at
# PROXY_AGE_END it ends. Announced PROXY_AGE_NOTICE_DAYS before each change.
PROXY_AGE_RESTRICTED = envint("PROXY_AGE_RESTRICTED", 12)
PROXY_AGE_END = envint("PROXY_AGE_END", 18)
PROXY_AGE_NOTICE_DAYS = envint("PROXY_AGE_NOTICE_DAYS", 30)

OTP_TOTP_ISSUER = SITE_NAME
# Recovery codes: 10 single-use codes is the common convention (GitHub, Google).
RECOVERY_CODE_COUNT = 10
OTP_WEBAUTHN_RP_ID = envstr("WEBAUTHN_RP_ID", "localhost")
OTP_WEBAUTHN_RP_NAME = SITE_NAME
OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN = False
OTP_WEBAUTHN_ALLOWED_ORIGINS = envlist("WEBAUTHN_ORIGINS", [SITE_URL])

# --- Sessions (docs/security.md §5) ---------------------------------------------------------------
# Sessions are read from the cache (Redis in production) and written through to the database,
# which keeps them across a cache restart. Deleting a session (sign-out, "sign out everywhere",
# a password change ending the others) goes through the session store, which drops both.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
# Idle timeout 15 minutes: the server-side session expires 15 minutes after it was last saved
# (HIPAA automatic logoff); accounts.middleware.SessionActivityMiddleware saves it (and its
# UserSession's last-seen time) at most once a minute, so the timeout is 14 to 15 minutes after
# the last request, and a page within the minute writes nothing.
SESSION_COOKIE_AGE = 15 * 60
SESSION_SAVE_EVERY_REQUEST = False
# A minute: the idle timeout loses at most a minute, and a busy session writes once a minute.
SESSION_ACTIVITY_INTERVAL = 60
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
# Absolute timeout 12 hours: a stolen cookie is useless after a working day.
SESSION_ABSOLUTE_TIMEOUT = 12 * 60 * 60
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_NAME = "__Host-lightbox-session" if PRODUCTION else "lightbox-session"
CSRF_COOKIE_NAME = "__Host-lightbox-csrf" if PRODUCTION else "lightbox-csrf"
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")
CSRF_FAILURE_VIEW = "portal.views.csrf_failure"

# --- Security headers (docs/security.md §15) ------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_SSL_REDIRECT = PRODUCTION and envbool("SECURE_SSL_REDIRECT", True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# Two years with preload: the standard HSTS value for a site that is HTTPS-only for good.
SECURE_HSTS_SECONDS = 63072000 if PRODUCTION else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = PRODUCTION
SECURE_HSTS_PRELOAD = PRODUCTION
if envstr("SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = (envstr("SECURE_PROXY_SSL_HEADER"), "https")
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:", "blob:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- Email ------------------------------------------------------------------------------------
# Production refuses to start without it: reset and confirmation links printed to stdout reach
# nobody (docs/security.md §26). EMAIL_URL=console:// is allowed for those who mean it.
EMAIL_URL = _required("EMAIL_URL") if PRODUCTION else envstr("EMAIL_URL")
if EMAIL_URL:
    _email = dj_email_url.parse(EMAIL_URL)
    EMAIL_BACKEND = _email["EMAIL_BACKEND"]
    EMAIL_HOST = _email["EMAIL_HOST"]
    EMAIL_PORT = _email["EMAIL_PORT"]
    EMAIL_HOST_USER = _email["EMAIL_HOST_USER"]
    EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_PASSWORD"]
    EMAIL_USE_TLS = _email["EMAIL_USE_TLS"]
    EMAIL_USE_SSL = _email["EMAIL_USE_SSL"]
    EMAIL_FILE_PATH = _email.get("EMAIL_FILE_PATH")
else:
    # The embedded default: one mailbox for every process (web server, worker, commands), each
    # email a file under DATA_DIR/mail; on the console they were split between the terminal and
    # the worker's log. `make run` prints where it is.
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(DATA_DIR / "mail")
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "Lightbox <no-reply@lightbox.localhost>")

# --- Celery (STYLE.md "Celery") ---------------------------------------------------------------
CELERY_BROKER_URL = envstr("CELERY_BROKER_URL") or "filesystem://"
if PRODUCTION and CELERY_BROKER_URL != "filesystem://":
    require_protected_service_url("CELERY_BROKER_URL", CELERY_BROKER_URL)  # docs/security.md §18
if CELERY_BROKER_URL == "filesystem://":
    _queue_dir = DATA_DIR / "queue"
    for _sub in ("messages", "processed", "control"):
        (_queue_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "messages"),
        "data_folder_out": str(_queue_dir / "messages"),
        "processed_folder": str(_queue_dir / "processed"),
        # Broadcast (control) messages; kombu's default is ./control in the working directory.
        "control_folder": str(_queue_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_ALWAYS_EAGER = False
# Packaging has a queue of its own, so a deployment can give it workers that never import,
# render or de-identify (those load pydicom, numpy and Pillow for good: 49 MB), and that stay
# as small as they can be however big the study (README "Deploying"). Every worker
# started by `make run` and the tests takes both queues.
# OCR of newly imported images has its own queue: it loads the pixel stack (numpy, Pillow,
# Tesseract runs) that a worker packaging originals never needs, and can take minutes a study.
# Tasks that decode pixels (OCR, thumbnails) go to "pixels": the export worker stays free of the
# pixel stack (pydicom, numpy, Pillow; tests/exports/test_worker.py).
CELERY_TASK_ROUTES = {"exports.package": {"queue": "exports"}, "imaging.pixel_text_check_study": {"queue": "pixels"},
                      "imaging.thumbnails_render_study": {"queue": "pixels"}}
CELERY_BEAT_SCHEDULE = {
    # Re-hash every stored DICOM file nightly: silent corruption or
    # tampering is found within a day, and 03:15 keeps the disk reads away from clinic hours.
    "imaging-verify-integrity": {
        "task": "imaging.verify_integrity",
        "schedule": crontab(hour=3, minute=15),
    },
    # "audit-create-checkpoint": every AUDIT_CHECKPOINT_MINUTES, set with the audit settings below.
    # Integrity alerts become flags in the privacy office's queue within 10 minutes: this task is
    # their only way in (the queue page only reads), and a query of the few open alerts is cheap.
    "flags-from-integrity-alerts": {
        "task": "flags.flags_from_integrity_alerts",
        "schedule": crontab(minute="*/10"),
    },
    # Exports: delete expired archives hourly (a link promised "7 days" should not live on for
    # a day more), and re-send jobs stuck in queued every minute (broker outage, lost worker).
    "exports-purge-expired": {
        "task": "exports.purge_expired",
        "schedule": crontab(minute=5),
    },
    "exports-reconcile": {
        "task": "exports.reconcile",
        "schedule": 60.0,
    },
}

# --- Static files, i18n -----------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
    # DICOM originals, content-addressed (dicom/ab/cd/<sha256>.dcm). Object storage is a
    # configuration change (django-storages S3). Files are patient data: owner and group only.
    "dicom": {
        "BACKEND": "imaging.storage.AtomicFileSystemStorage",
        "OPTIONS": {
            "location": str(DATA_DIR / "storage"),
            "file_permissions_mode": 0o640,
            "directory_permissions_mode": 0o750,
        },
    },
    # Cached PNG/WebP renders (renders/...): disposable, rebuilt on demand, still patient data.
    "renders": {
        "BACKEND": "imaging.storage.AtomicFileSystemStorage",
        "OPTIONS": {
            "location": str(DATA_DIR / "storage"),
            "file_permissions_mode": 0o640,
            "directory_permissions_mode": 0o750,
        },
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION
MEDIA_ROOT = DATA_DIR / "media"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
# The default zone for people who have not chosen one on their account page (and for emails
# to them); accounts.timezones.TimeZoneMiddleware activates each person's own choice.
TIME_ZONE = envstr("TIME_ZONE", "UTC")
# One date format everywhere (issue 19): "4 Dec 2026", and "4 Dec 2026, 16:40 GMT" with a time,
# the zone always shown. Templates use |date:"DATE_FORMAT" / |date:"DATETIME_FORMAT". The
# English locale's own formats would win over these settings, so portal/formats/en repeats them.
DATE_FORMAT = "j M Y"
DATETIME_FORMAT = "j M Y, H:i T"
SHORT_DATE_FORMAT = DATE_FORMAT
SHORT_DATETIME_FORMAT = DATETIME_FORMAT
TIME_FORMAT = "H:i T"
MONTH_DAY_FORMAT = "j M"  # chart labels: "4 Dec"
YEAR_MONTH_FORMAT = "F Y"  # month headings: "December 2026"
FORMAT_MODULE_PATH = ["portal.formats"]
USE_I18N = True
USE_TZ = True

# --- Logging: request ids, never secrets (docs/security.md §14) -----------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "portal.middleware.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"}
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # At DEBUG the template engine logs whole page contexts, which on the enrolment and
        # recovery-code pages include secrets (docs/security.md §14); never below INFO.
        "django.template": {"level": "INFO"},
        # pylibjpeg's OpenJPEG plugin logs every tile it encodes at INFO.
        "openjpeg": {"level": "WARNING"},
        # pydicom logs every failed decode at ERROR, with the stream's repr; the import tries to
        # decode each new file and stores the reason in Instance.pixel_error instead.
        "pydicom.pixels.decoders.base": {"level": "CRITICAL"},
    },
}

# --- text in pixels (imaging/dicom/ocr.py) ---
# Tesseract's command; unset uses `tesseract` on PATH (Debian's tesseract-ocr). Without it every
# image is reported "could not be checked for text".
OCR_TESSERACT_CMD = envstr("OCR_TESSERACT_CMD") or None

# --- decoding untrusted pixels (imaging/dicom/limits.py, docs/security.md §21) ---
# The most one file's pixels may take decoded (frames x rows x columns x samples x bytes), checked
# before any decoding by the import, the viewer, OCR and de-identification. Those decode one frame
# at a time, so memory holds a frame whatever this says; the limit bounds the work a lying header
# can cause. 4 GiB holds a 4,000-slice enhanced CT or a 1,000-frame colour ultrasound loop; a
# larger file is stored but marked "cannot be shown".
DICOM_MAX_DECODED_BYTES = envint("DICOM_MAX_DECODED_BYTES", 4 * 1024**3)
# What one "Verify a copy" check (a patient's upload of up to 50 files) may decode in all: as much
# as it may upload (256 MB); a file past it, or past what the check's other files left, is
# reported "not compared" and its header still compared.
VERIFY_COPY_MAX_DECODED_BYTES = envint("VERIFY_COPY_MAX_DECODED_BYTES", 256 * 1024**2)
if DICOM_MAX_DECODED_BYTES <= 0 or VERIFY_COPY_MAX_DECODED_BYTES <= 0:
    raise ImproperlyConfigured("DICOM_MAX_DECODED_BYTES and VERIFY_COPY_MAX_DECODED_BYTES must be positive")

# --- exports ---
# Encrypted archives (DESIGN.md flow 5). Patient data: owner-only directory, never served statically.
EXPORTS_DIR = Path(envstr("EXPORTS_DIR", str(DATA_DIR / "exports"))).resolve()
# A week is long enough to download at home, short enough that few archives sit on disk.
EXPORTS_EXPIRY_DAYS = 7
# Five downloads cover a retry or a second device; more would turn the link into a share.
EXPORTS_MAX_DOWNLOADS = 5
# A queued job never sent to the broker (outage) is re-sent after this many seconds.
EXPORTS_REDISPATCH_AFTER = 60
# A packaging job whose worker stopped reporting progress for this long is presumed dead.
EXPORTS_STALE_AFTER = 300

# --- flags ---
# Days the privacy office has to answer a flag (due date = received + this). 30 by default: the
# HIPAA right-of-access clock (45 CFR 164.524) and the GDPR's one month for a data-subject request.
FLAGS_DEADLINE_DAYS = envint("FLAGS_DEADLINE_DAYS", 30)

# --- consent ---
# The answer where a patient has made no choice. "refused": nothing is used until the patient
# says yes (opt-in), the safe default for AI training and licensing of health data.
CONSENT_DEFAULT = envstr("CONSENT_DEFAULT", "refused")
if CONSENT_DEFAULT not in {"refused", "granted"}:
    raise ImproperlyConfigured("CONSENT_DEFAULT must be 'refused' or 'granted'")

# --- pacs ---
# The hospital PACS's DICOMweb root (e.g. https://pacs.example.org/dicom-web). Empty: no sync,
# no background fetch on activation, and /healthz reports the PACS as not configured.
PACS_DICOMWEB_URL = envstr("PACS_DICOMWEB_URL", "")
PACS_USERNAME = envstr("PACS_USERNAME", "")
PACS_PASSWORD = envstr("PACS_PASSWORD", "")
# Seconds to connect / to wait for a response. A PACS that hangs must not hold a worker forever.
PACS_CONNECT_TIMEOUT = envint("PACS_CONNECT_TIMEOUT", 10)
PACS_READ_TIMEOUT = envint("PACS_READ_TIMEOUT", 120)
# Minutes between periodic syncs (Celery beat). New studies appear on the portal within this.
PACS_SYNC_INTERVAL_MINUTES = envint("PACS_SYNC_INTERVAL_MINUTES", 15)
# The assigning authority of Patient IDs on a PACS that stores no Issuer of Patient ID: such
# studies match only patients of this issuer (the hospital's own MRNs).
PACS_DEFAULT_ISSUER = envstr("PACS_DEFAULT_ISSUER", "LOCAL")
# Milliseconds to pause after each retrieved instance, to keep a busy clinical PACS responsive.
PACS_THROTTLE_MS = envint("PACS_THROTTLE_MS", 0)
# Quick in-request attempts (0.5 s, 1 s apart) before a failure goes to the Celery task's backoff.
PACS_HTTP_ATTEMPTS = envint("PACS_HTTP_ATTEMPTS", 3)
CELERY_BEAT_SCHEDULE["pacs-sync"] = {
    "task": "imaging.pacs_sync",
    "schedule": PACS_SYNC_INTERVAL_MINUTES * 60,
}

# --- APIs (core/api.py, docs/security.md §22) ---
# Per service token, counted in the shared cache (Redis) so every web worker sees one count.
# 600 requests a minute is ten a second, several times what the PACS and EHR feeds send; a
# research broker checking studies one by one is still well inside it.
API_RATE_LIMIT = envint("API_RATE_LIMIT", 600)
# Of those, at most this many in any one second: a runaway client loop is stopped within a
# second instead of taking the whole minute's allowance at once.
API_RATE_BURST = envint("API_RATE_BURST", 20)
# Lookups that find nothing (an unknown or unreachable patient or study), per token per hour.
# A system that mistypes an MRN now and then never reaches it; a token walking through MRNs is
# stopped after 60 an hour, and every one of them is on the privacy office's page.
API_PROBE_LIMIT = envint("API_PROBE_LIMIT", 60)
for _name, _value in (("API_RATE_LIMIT", API_RATE_LIMIT), ("API_RATE_BURST", API_RATE_BURST), ("API_PROBE_LIMIT", API_PROBE_LIMIT)):
    if _value < 1:
        raise ImproperlyConfigured(f"{_name} must be a positive integer")

# --- audit checkpoints ---
# Minutes between signed checkpoints of the access log (audit/checkpoints.py). History older than
# this cannot be rewritten without exported copies and patients' receipts disagreeing. No new
# checkpoint is made when no event is new; a worker's first start makes the first one.
AUDIT_CHECKPOINT_MINUTES = envint("AUDIT_CHECKPOINT_MINUTES", 5)
if not 1 <= AUDIT_CHECKPOINT_MINUTES <= 24 * 60:
    raise ImproperlyConfigured("AUDIT_CHECKPOINT_MINUTES must be between 1 and 1440")
CELERY_BEAT_SCHEDULE["audit-create-checkpoint"] = {
    "task": "audit.create_checkpoint",
    "schedule": AUDIT_CHECKPOINT_MINUTES * 60,
}
# Seconds between sweeps that chain portal events queued while their patient's chain head was busy
# (audit.services, issue 18: a page never waits for an ingest batch). The next writer of the same
# patient usually chains them within milliseconds; the sweep bounds how long one can wait when
# no other writer comes: it is in the patient's log, and in the next checkpoint, by then.
AUDIT_CHAIN_PENDING_SECONDS = envint("AUDIT_CHAIN_PENDING_SECONDS", 10)
if not 1 <= AUDIT_CHAIN_PENDING_SECONDS <= 3600:
    raise ImproperlyConfigured("AUDIT_CHAIN_PENDING_SECONDS must be between 1 and 3600")
CELERY_BEAT_SCHEDULE["audit-chain-pending"] = {
    "task": "audit.chain_pending",
    "schedule": AUDIT_CHAIN_PENDING_SECONDS,
}

# Batches of events from connected systems (the events API, import_access_events) ingested at
# once (audit.ingest.ingest_slot); more wait their turn, up to AUDIT_INGEST_WAIT_SECONDS, then get
# a 503 with Retry-After. A batch keeps a core busy from start to end: one fewer than the cores
# leaves one for patients' pages (on 2 cores, 4 senders at once made a page's write 5.0x slower at
# p95, one batch at a time 2.1-2.5x). PostgreSQL only; SQLite lets one writer in at a time anyway.
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
AUDIT_INGEST_CONCURRENCY = envint("AUDIT_INGEST_CONCURRENCY", max(1, _CORES - 1))
AUDIT_INGEST_WAIT_SECONDS = envint("AUDIT_INGEST_WAIT_SECONDS", 20)
if not 1 <= AUDIT_INGEST_CONCURRENCY <= 64:
    raise ImproperlyConfigured("AUDIT_INGEST_CONCURRENCY must be between 1 and 64")
if not 1 <= AUDIT_INGEST_WAIT_SECONDS <= 600:
    raise ImproperlyConfigured("AUDIT_INGEST_WAIT_SECONDS must be between 1 and 600")
# The CPU nice value an API batch is worked at (core.cpu_priority.run_niced; 0 to 19, 0 = the
# pages' own priority, in the request's thread): a page sharing a core with a batch gets about
# nine tenths of it (the kernel's weights: 1024 for nice 0, 110 for nice 10). With 4 senders on 2
# cores, 50 browsing patients' pages were 1.2-1.4x their time without ingest at p95, 1.6-1.9x at
# nice 0 (benchmarks/site_under_ingest.py); 19 did no better. 10 rather than 19: under pages
# that keep every core busy a batch still gets some CPU (about a tenth beside each busy page
# process, where nice 19 gets 1.5%), and finishes.
AUDIT_INGEST_NICE = envint("AUDIT_INGEST_NICE", 10)
if not 0 <= AUDIT_INGEST_NICE <= 19:
    raise ImproperlyConfigured("AUDIT_INGEST_NICE must be between 0 and 19")

# --- sharing: pushes to partner hospitals (sharing/services.py) ---
# A partner that is down is tried again after 30 s, 1, 2, 4, 8 min, then every 15 min: 8 retries
# cover about an hour of outage before the patient is told it failed (a longer wait would leave
# them not knowing; a shorter one gives up on a routine restart of the partner's archive).
SHARING_PUSH_RETRIES = envint("SHARING_PUSH_RETRIES", 8)
SHARING_RETRY_BACKOFF = envint("SHARING_RETRY_BACKOFF", 30)
SHARING_RETRY_BACKOFF_MAX = envint("SHARING_RETRY_BACKOFF_MAX", 900)
# Seconds to connect to a partner / to wait for its answer to one instance (large multi-frame files).
SHARING_CONNECT_TIMEOUT = envint("SHARING_CONNECT_TIMEOUT", 10)
SHARING_READ_TIMEOUT = envint("SHARING_READ_TIMEOUT", 120)
# A queued push not picked up after 60 s is sent again; a sending push whose worker has not
# reported for 5 minutes (one instance's read timeout, twice, plus margin) is presumed dead.
SHARING_REDISPATCH_AFTER = 60
SHARING_STALE_AFTER = 300
CELERY_BEAT_SCHEDULE["sharing-reconcile"] = {"task": "sharing.reconcile", "schedule": 60}
# The growing-up rules once a day (proxies.tasks.apply_ages, as `apply_proxy_ages`): 02:30, before
# the 03:15 integrity run, so a grant that ends on a birthday is ended before the day's first visit.
CELERY_BEAT_SCHEDULE["proxies-apply-ages"] = {"task": "proxies.apply_ages", "schedule": crontab(hour=2, minute=30)}
