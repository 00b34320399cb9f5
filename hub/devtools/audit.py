"""``make audit``: a dependency audit that tells the truth.

``pip-audit`` prints "No known vulnerabilities found" and exits 0 even when it could check
*nothing* (every package "skipped": no vulnerability database reachable). This wrapper
reads its JSON report instead and answers with one of three exit codes:

- ``0`` every installed distribution was checked and none has a known vulnerability;
- ``1`` at least one known vulnerability (each is listed with its fix versions);
- ``2`` the vulnerability data was unavailable or incomplete — pip-audit failed, or
  skipped any distribution, or the offline database is missing or too old. This is never
  reported as a pass: the output says ``AUDIT UNAVAILABLE`` and how many packages went
  unchecked.

Two sources of vulnerability data:

- online (default): ``pip-audit`` against the PyPI JSON API or OSV (``--service osv``);
- offline: ``--osv-db PATH``, a downloaded OSV export of the PyPI ecosystem (the
  ``all.zip`` of OSV's bucket, or a directory of its JSON files), matched here against the
  installed distributions (:func:`affected`); its newest ``modified`` date must be within
  ``--max-age-days`` (default 30), else exit 2 — a stale database is not the truth either.

``make test`` never runs this (it needs the network or a downloaded database); CI runs
``make audit`` as a separate step and records an unavailable audit as such.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

CLEAN, VULNERABLE, UNAVAILABLE = 0, 1, 2
#: the hub's own distribution (installed editable from this tree, not from an index)
OWN = "coresponder-hub"


def canonical(name: str) -> str:
    """PEP 503 normalized distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Finding:
    package: str
    version: str
    advisory: str
    fixed: list[str] = field(default_factory=list)


@dataclass
class Report:
    """What an audit found: the distributions checked, those it could not check (with the
    reason) and the vulnerabilities; ``problem`` when the data source itself failed."""

    checked: int = 0
    unchecked: dict[str, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    problem: str | None = None
    source: str = ""

    @property
    def exit_code(self) -> int:
        if self.findings:
            return VULNERABLE
        if self.problem or self.unchecked or not self.checked:
            return UNAVAILABLE
        return CLEAN

    def render(self) -> str:
        lines = [f"dependency audit ({self.source}): {self.checked} distributions checked"]
        for f in self.findings:
            fix = ", ".join(f.fixed) or "no fixed version"
            lines.append(f"VULNERABLE {f.package} {f.version}: {f.advisory} (fixed in {fix})")
        if self.exit_code == UNAVAILABLE:
            why = self.problem or (
                f"{len(self.unchecked)} distributions could not be checked"
                if self.unchecked
                else "nothing was checked"
            )
            lines.append(f"AUDIT UNAVAILABLE: {why} — this is NOT a clean result")
            for name, reason in sorted(self.unchecked.items())[:10]:
                lines.append(f"  unchecked {name}: {reason}")
            if len(self.unchecked) > 10:
                lines.append(f"  ... and {len(self.unchecked) - 10} more")
        elif self.exit_code == CLEAN:
            lines.append("no known vulnerabilities in any installed distribution")
        return "\n".join(lines)


# --------------------------------------------------------------------------- pip-audit


def from_pip_audit(returncode: int, stdout: str, stderr: str) -> Report:
    """A :class:`Report` from pip-audit's ``-f json`` output (pure). A run that produced no
    report, or skipped any distribution other than the hub's own, is unavailable."""
    report = Report(source="pip-audit")
    try:
        doc = json.loads(stdout)
        deps = doc["dependencies"]
    except (ValueError, KeyError, TypeError):
        last = next((ln for ln in reversed(stderr.strip().splitlines()) if ln.strip()), "no output")
        report.problem = f"pip-audit produced no report (exit {returncode}): {last[:300]}"
        return report
    for dep in deps:
        name = canonical(str(dep.get("name", "?")))
        if dep.get("skip_reason"):
            if name != OWN:
                report.unchecked[name] = str(dep["skip_reason"])
            continue
        report.checked += 1
        for vuln in dep.get("vulns") or ():
            fixed = list(vuln.get("fix_versions") or ())
            report.findings.append(Finding(name, str(dep.get("version", "?")), str(vuln.get("id")), fixed))
    return report


def run_pip_audit(service: str, python: str = sys.executable) -> Report:
    cmd = [python, "-m", "pip_audit", "-f", "json", "--progress-spinner", "off", "-s", service]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Report(source="pip-audit", problem=f"pip-audit could not run: {type(exc).__name__}")
    if "No module named pip_audit" in proc.stderr:
        return Report(source="pip-audit", problem="pip-audit is not installed (pip install -e '.[dev]')")
    report = from_pip_audit(proc.returncode, proc.stdout, proc.stderr)
    report.source = f"pip-audit, {service}"
    return report


# --------------------------------------------------------------------------- offline OSV


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _in_range(version: Version, events: Sequence[dict[str, str]]) -> bool:
    """Whether ``version`` lies in an OSV ``ECOSYSTEM`` range (its events: introduced,
    fixed, last_affected, limit)."""
    parsed: list[tuple[Version, int, str]] = []
    order = {"introduced": 0, "fixed": 1, "last_affected": 1, "limit": 1}
    for event in events:
        for kind, raw in event.items():
            v = Version("0") if raw == "0" else _version(raw)
            if v is not None and kind in order:
                parsed.append((v, order[kind], kind))
    affected = False
    for v, _, kind in sorted(parsed):
        if kind == "introduced" and v <= version:
            affected = True
        elif (kind in ("fixed", "limit") and v <= version) or (kind == "last_affected" and v < version):
            affected = False
    return affected


def affected(vuln: dict[str, Any], name: str, version: str) -> list[str] | None:
    """The fixed versions when OSV record ``vuln`` affects ``name`` ``version``, else None."""
    v = _version(version)
    for aff in vuln.get("affected") or ():
        pkg = aff.get("package") or {}
        if pkg.get("ecosystem") != "PyPI" or canonical(str(pkg.get("name", ""))) != name:
            continue
        hit = version in (aff.get("versions") or ())
        fixed: list[str] = []
        for rng in aff.get("ranges") or ():
            events = rng.get("events") or []
            fixed += [e["fixed"] for e in events if "fixed" in e]
            if rng.get("type") == "ECOSYSTEM" and v is not None and _in_range(v, events):
                hit = True
        if hit:
            return fixed
    return None


def osv_records(path: Path) -> Iterator[dict[str, Any]]:
    """The OSV records of a downloaded export: a zip of JSON files or a directory of them."""
    if path.is_dir():
        for file in sorted(path.rglob("*.json")):
            yield json.loads(file.read_text(encoding="utf-8"))
        return
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.filename.endswith(".json"):
                yield json.loads(archive.read(info))


def installed() -> dict[str, str]:
    """Every installed distribution of this interpreter: normalized name → version."""
    out: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out[canonical(name)] = dist.version
    return out


def audit_offline(
    db: Path, dists: dict[str, str], *, max_age: timedelta, now: datetime | None = None
) -> Report:
    """Match ``dists`` against the OSV export ``db`` (pure apart from reading it)."""
    report = Report(source=f"offline OSV database {db}")
    if not db.exists():
        report.problem = f"the OSV database {db} does not exist"
        return report
    newest: datetime | None = None
    records = 0
    by_name: dict[str, list[dict[str, Any]]] = {}
    try:
        for vuln in osv_records(db):
            records += 1
            modified = vuln.get("modified")
            if isinstance(modified, str):
                stamp = datetime.fromisoformat(modified.replace("Z", "+00:00"))
                newest = stamp if newest is None or stamp > newest else newest
            for aff in vuln.get("affected") or ():
                name = canonical(str((aff.get("package") or {}).get("name", "")))
                by_name.setdefault(name, []).append(vuln)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        report.problem = f"the OSV database {db} is unreadable ({type(exc).__name__})"
        return report
    if not records or newest is None:
        report.problem = f"the OSV database {db} holds no records"
        return report
    age = (now or datetime.now(UTC)) - newest
    if age > max_age:
        report.problem = (
            f"the OSV database {db} is {age.days} days old (newest record {newest.date()}); "
            f"download a fresh one (limit {max_age.days} days)"
        )
        return report
    report.source += f", newest record {newest.date()}"
    for name, version in sorted(dists.items()):
        if name == OWN:
            continue
        report.checked += 1
        seen: set[str] = set()
        for vuln in by_name.get(name, ()):
            fixed = affected(vuln, name, version)
            if fixed is not None and vuln.get("id") not in seen:
                seen.add(str(vuln.get("id")))
                report.findings.append(Finding(name, version, str(vuln.get("id")), fixed))
    return report


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make audit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--osv-db", type=Path, help="offline: an OSV PyPI export (zip or directory)")
    parser.add_argument("--max-age-days", type=int, default=30, help="offline: the oldest database accepted")
    parser.add_argument("--service", choices=("pypi", "osv"), default="pypi", help="online: the data source")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.osv_db is not None:
        report = audit_offline(args.osv_db, installed(), max_age=timedelta(days=args.max_age_days))
    else:
        report = run_pip_audit(args.service)
    print(report.render(), file=sys.stderr if report.exit_code else sys.stdout)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
