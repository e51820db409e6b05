"""Hypothesis settings and shared strategies for the property-based tests.

Imported by every ``tests/<app>/test_properties.py`` and the DICOM import fuzz. Profiles:

- ``lightbox`` (default): few examples, derandomised, so ``make test`` stays fast and gives the
  same answer on every run; no example database is written into the work tree.
- ``fuzz``: ``HYPOTHESIS_PROFILE=fuzz`` for a long local hunt (random, many examples).

Each example runs in ``example_scope()``: its own rolled-back transaction and an empty cache
(rate-limit counters), so one example's writes or failed attempts never decide the next one's
outcome, and "nothing was written" is measured per example.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from django.core.cache import cache
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

_COMMON = {
    "deadline": None,  # requests hit PostgreSQL and Redis; timing is not what is under test
    "database": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("lightbox", max_examples=15, derandomize=True, print_blob=True, **_COMMON)
settings.register_profile("fuzz", max_examples=1000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "lightbox"))


@contextlib.contextmanager
def example_scope() -> Iterator[None]:
    """One example: its writes are rolled back and the rate limits start from zero."""
    cache.clear()
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


# Values that have broken web applications before: NUL and control characters, markup, path
# traversal, SQL, numbers at and past the limits, impossible dates, Unicode digits (int("١")
# is 1 in Python), right-to-left overrides, and very long strings.
NASTY = [
    "", " ", "\x00", "a\x00b", "\r\n", "\t", "\x1b[31m", "\u202e", "\ufeff", "\U0001f4a9", "١٢٣", "１２", "²", "½", "٣.٥",
    "<script>alert(1)</script>", "../../../../etc/passwd", "..\\..\\boot.ini", "%00", "%2e%2e%2f",
    "' OR 1=1 --", '"; DROP TABLE x; --', "{{ 7*7 }}", "${jndi:ldap://x}",
    "0", "-1", "1e309", "NaN", "inf", "9" * 40, "2147483648", "-9223372036854775809", "0x10", "1_000",
    "2024-02-30", "0000-00-00", "0001-01-01", "9999-12-31", "10000-01-01", "2026-03-03T10:14:00",
    "1.2.840.10008.5.1.4.1.1.2", "on", "off", "true", "null", "[]", "{}",
    "x" * 5000,
]


def text() -> st.SearchStrategy[str]:
    """Any text a browser or a client could send (surrogates cannot be encoded, so none)."""
    return st.one_of(st.sampled_from(NASTY), st.text(max_size=80), st.text(max_size=8).map(lambda s: s * 600))


def form_value() -> st.SearchStrategy[str | list[str]]:
    """One posted field: usually a value, sometimes repeated (``a=1&a=2``)."""
    return st.one_of(text(), st.lists(text(), min_size=2, max_size=3))


def form_data(fields: list[str], *, extra: tuple[str, ...] = ("patient", "status", "owner", "user", "id")) -> st.SearchStrategy[dict]:
    """A POST/GET body for a form with ``fields``: any subset, any values, plus fields it does
    not own (docs/security.md §10: they must be ignored)."""
    keys = list(dict.fromkeys([*fields, *extra]))
    return st.fixed_dictionaries({}, optional={key: form_value() for key in keys})


def json_value(max_leaves: int = 12) -> st.SearchStrategy[object]:
    """Any JSON document."""
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), text()
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.one_of(text(), st.sampled_from(["events", "resourceType", "entry", "patient", "scope", "study_uids"])), inner, max_size=4)),
        max_leaves=max_leaves,
    )


def error_texts(form) -> list[str]:
    """Every error a bound, invalid form shows (field and non-field), as rendered text."""
    from django.utils.html import escape

    return [escape(str(error)) for errors in form.errors.values() for error in errors]
