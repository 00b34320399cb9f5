"""``make audit`` tells the truth (:mod:`hub.devtools.audit`): no vulnerability data is
never a pass — pip-audit skipping every package, failing to reach its service, or an
offline database that is missing or stale all exit 2 with ``AUDIT UNAVAILABLE`` — and an
offline OSV export finds what it lists."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hub.devtools.audit import (
    CLEAN,
    UNAVAILABLE,
    VULNERABLE,
    affected,
    audit_offline,
    from_pip_audit,
)
from hub.kernel.settings import PROJECT_ROOT

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_pip_audit_skipping_every_package_is_unavailable_not_clean() -> None:
    """What pip-audit printed here: every dependency skipped, "No known vulnerabilities
    found", exit 0 — the wrapper reads it as UNAVAILABLE."""
    skipped = {"dependencies": [
        {"name": "aiohttp", "skip_reason": "Dependency not found on PyPI and could not be audited: aiohttp"},
        {"name": "coresponder-hub", "skip_reason": "editable"},
    ], "fixes": []}
    report = from_pip_audit(0, json.dumps(skipped), "No known vulnerabilities found")
    assert report.exit_code == UNAVAILABLE
    assert "AUDIT UNAVAILABLE: 1 distributions could not be checked" in report.render()
    assert "NOT a clean result" in report.render()
    crashed = from_pip_audit(1, "", "requests.exceptions.ConnectionError: Failed to resolve 'api.osv.dev'")
    assert crashed.exit_code == UNAVAILABLE and "ConnectionError" in (crashed.problem or "")


def test_pip_audit_results_with_data_are_clean_or_vulnerable() -> None:
    clean = {"dependencies": [{"name": "idna", "version": "3.7", "vulns": []}]}
    assert from_pip_audit(0, json.dumps(clean), "").exit_code == CLEAN
    bad = {"dependencies": [{"name": "setuptools", "version": "65.5.0", "vulns": [
        {"id": "GHSA-5rjg-fvgr-3xxf", "fix_versions": ["78.1.1"]}]}]}
    report = from_pip_audit(1, json.dumps(bad), "")
    assert report.exit_code == VULNERABLE
    assert "VULNERABLE setuptools 65.5.0: GHSA-5rjg-fvgr-3xxf (fixed in 78.1.1)" in report.render()


def test_make_audit_without_vulnerability_data_fails_loudly() -> None:
    """The real command on this machine (no vulnerability database reachable, or pip-audit
    absent): exit 2 and AUDIT UNAVAILABLE — never "no known vulnerabilities"."""
    proc = subprocess.run(
        [sys.executable, "-m", "hub.devtools.audit", "--osv-db", str(PROJECT_ROOT / "no-such-db.zip")],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120, check=False,
    )
    assert proc.returncode == UNAVAILABLE, proc.stderr
    assert "AUDIT UNAVAILABLE" in proc.stderr and "no known vulnerabilities" not in proc.stdout + proc.stderr


def _osv(
    vid: str, name: str, events: list[dict[str, str]], modified: datetime, versions: tuple[str, ...] = ()
) -> dict:
    return {
        "id": vid, "modified": modified.isoformat().replace("+00:00", "Z"),
        "affected": [{"package": {"ecosystem": "PyPI", "name": name},
                      "ranges": [{"type": "ECOSYSTEM", "events": events}], "versions": list(versions)}],
    }


def test_osv_ranges() -> None:
    vuln = _osv("X", "Setup_Tools", [{"introduced": "0"}, {"fixed": "78.1.1"}], NOW)
    assert affected(vuln, "setup-tools", "65.5.0") == ["78.1.1"]
    assert affected(vuln, "setup-tools", "78.1.1") is None
    events = [{"introduced": "1.0"}, {"fixed": "1.2"}, {"introduced": "2.0"}, {"last_affected": "2.1"}]
    two = _osv("Y", "p", events, NOW)
    versions = ("0.9", "1.0", "1.1", "1.2", "2.0", "2.1", "2.2")
    assert [v for v in versions if affected(two, "p", v) is not None] == ["1.0", "1.1", "2.0", "2.1"]
    listed = _osv("Z", "q", [], NOW, versions=("0.3",))
    assert affected(listed, "q", "0.3") == [] and affected(listed, "q", "0.4") is None


def test_offline_database_finds_listed_advisories_and_refuses_a_stale_or_missing_one(tmp_path: Path) -> None:
    db = tmp_path / "all.zip"
    with zipfile.ZipFile(db, "w") as z:
        upto = [{"introduced": "0"}, {"fixed": "78.1.1"}]
        fresh = _osv("PYSEC-1", "setuptools", upto, NOW - timedelta(days=2))
        old = _osv("PYSEC-2", "idna", [{"introduced": "0"}, {"fixed": "3.7"}], NOW - timedelta(days=400))
        z.writestr("PYSEC-1.json", json.dumps(fresh))
        z.writestr("PYSEC-2.json", json.dumps(old))
    dists = {"setuptools": "65.5.0", "idna": "3.10", "coresponder-hub": "0.1.0"}
    report = audit_offline(db, dists, max_age=timedelta(days=30), now=NOW)
    assert report.exit_code == VULNERABLE and report.checked == 2
    found = [(f.package, f.advisory, f.fixed) for f in report.findings]
    assert found == [("setuptools", "PYSEC-1", ["78.1.1"])]
    fixed = audit_offline(db, {"setuptools": "80.0.0", "idna": "3.10"}, max_age=timedelta(days=30), now=NOW)
    assert fixed.exit_code == CLEAN
    stale = audit_offline(db, dists, max_age=timedelta(days=30), now=NOW + timedelta(days=60))
    assert stale.exit_code == UNAVAILABLE and "days old" in (stale.problem or "")
    missing = audit_offline(tmp_path / "none.zip", dists, max_age=timedelta(days=30), now=NOW)
    assert missing.exit_code == UNAVAILABLE and "does not exist" in (missing.problem or "")


def test_build_requirements_are_pinned_past_known_advisories() -> None:
    text = (PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'requires = ["setuptools>=78.1.1", "wheel>=0.46.2"]' in text
