"""The house date formats for English, taken from the settings (portal/settings.py).

Django prefers a locale's format module to the settings, and its English module says
"Dec. 4, 2026"; this one, first on ``FORMAT_MODULE_PATH``, gives the settings' formats instead.
"""

from __future__ import annotations

from django.conf import settings

DATE_FORMAT = settings.DATE_FORMAT
DATETIME_FORMAT = settings.DATETIME_FORMAT
SHORT_DATE_FORMAT = settings.SHORT_DATE_FORMAT
SHORT_DATETIME_FORMAT = settings.SHORT_DATETIME_FORMAT
TIME_FORMAT = settings.TIME_FORMAT
MONTH_DAY_FORMAT = settings.MONTH_DAY_FORMAT
YEAR_MONTH_FORMAT = settings.YEAR_MONTH_FORMAT
