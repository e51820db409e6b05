"""No pinned or installed dependency has a known vulnerability (docs/security.md).

``pip-audit`` checks the pins of ``requirements.txt`` and ``requirements-dev.txt`` and every
package installed in the test environment (which adds the dependencies of dependencies) against
a vulnerability database: PyPI's own (``/pypi/<name>/<version>/json``) first, then OSV. Any
known vulnerability fails the test with the fixed versions to bump to.

A database that cannot be reached must not pass for "no vulnerability": pip-audit reports a
package it could not look up as skipped and still exits 0, so every skip is read here. A
service that audited nothing is unreachable and the next one is tried; when none answers the
test is skipped with each service's exact error; a service that answered for some packages
but not others fails the test (an unaudited pin is not a clean pin).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("pypi", "osv")
TARGETS = {
    "requirements pins": ["-r", "requirements.txt", "-r", "requirements-dev.txt", "--no-deps", "--disable-pip"],
    "installed environment": ["--local"],
}


class Unreachable(Exception):
    pass


# Services found unreachable in this run, with the reason: not asked again for the next target.
UNREACHABLE: dict[str, str] = {}


def audit(service: str, target: list[str]) -> list[dict]:
    """The dependencies pip-audit reports (name, version, vulns or skip_reason)."""
    result = subprocess.run(
        [sys.executable, "-m", "pip_audit", "--vulnerability-service", service, "--format", "json",
         "--progress-spinner", "off", "--timeout", "30", *target],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    try:
        report = json.loads(result.stdout)
    except ValueError:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise Unreachable(f"{service}: {last[:300]}") from None
    dependencies = report["dependencies"]
    if dependencies and all("skip_reason" in d for d in dependencies):
        raise Unreachable(f"{service}: audited nothing ({dependencies[0]['skip_reason']})")
    return dependencies


def findings(dependencies: list[dict]) -> tuple[list[str], list[str]]:
    """(known vulnerabilities with their fixes, packages that could not be audited)."""
    vulnerable = [
        f"{d['name']} {d['version']}: {v['id']} ({', '.join(v.get('aliases', []))}) fixed in {', '.join(v['fix_versions']) or 'no release yet'}"
        for d in dependencies
        for v in d.get("vulns", [])
    ]
    skipped = [f"{d['name']}: {d['skip_reason']}" for d in dependencies if "skip_reason" in d]
    return vulnerable, skipped


def test_findings_are_read_from_the_report():
    """The report parser must see a vulnerability and a skip (else the audit proves nothing)."""
    vulnerable, skipped = findings([
        {"name": "django", "version": "5.2.0", "vulns": [{"id": "PYSEC-1", "fix_versions": ["5.2.1"], "aliases": ["CVE-1"]}]},
        {"name": "gone", "skip_reason": "Dependency not found on PyPI and could not be audited: gone (1.0)"},
        {"name": "clean", "version": "1.0", "vulns": []},
    ])
    assert vulnerable == ["django 5.2.0: PYSEC-1 (CVE-1) fixed in 5.2.1"]
    assert skipped == ["gone: Dependency not found on PyPI and could not be audited: gone (1.0)"]


@pytest.mark.parametrize("target", TARGETS, ids=list(TARGETS))
def test_no_known_vulnerability(target):
    errors = []
    for service in SERVICES:
        if service in UNREACHABLE:
            errors.append(UNREACHABLE[service])
            continue
        try:
            dependencies = audit(service, TARGETS[target])
        except Unreachable as exc:
            UNREACHABLE[service] = str(exc)
            errors.append(str(exc))
            continue
        vulnerable, skipped = findings(dependencies)
        assert not vulnerable, "Known vulnerabilities; bump these pins:\n" + "\n".join(vulnerable)
        assert not skipped, f"{service} could not audit:\n" + "\n".join(skipped)
        assert len(dependencies) > 20, dependencies  # the requirement files were really read
        return
    pytest.skip("No vulnerability service reachable from here: " + "; ".join(errors))
