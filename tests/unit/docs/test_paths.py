"""The documentation points at things that exist: every repository path written in
backticks in ``README.md``, ``docs/*.md`` and the READMEs inside the source tree, and every
dotted module name (optionally with one attribute) in ``docs/architecture.md``, which the
README links to."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

from hub.kernel.settings import PROJECT_ROOT

PACKAGES = ("schemas", "hub", "connectors", "projections", "bench")
DOCS = sorted({
    PROJECT_ROOT / "README.md",
    *(PROJECT_ROOT / "docs").glob("*.md"),
    *(p for d in (*PACKAGES, "deploy") for p in (PROJECT_ROOT / d).rglob("README.md")),
})
_TICKED = re.compile(r"`([^`\n]+)`")
#: top-level entries the repository holds (not ``var/``, ``.cache/``, ``.venv/``: they exist
#: only on a machine that ran the hub, so paths under them are not checked)
TRACKED_TOP_LEVEL = frozenset(
    name.split("/")[0]
    for name in subprocess.run(
        ["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
)


def repo_paths(text: str) -> set[str]:
    """Backticked tokens that name a path under a top-level entry of the repository
    (``hub/kernel/db.py``, ``deploy/k8s/``); placeholders (``<name>``, ``*``, ``{x}``) and
    paths under directories the repository does not hold (``var/``, ``/etc``) are skipped."""
    out = set()
    for token in _TICKED.findall(text):
        token = token.split("#")[0]
        if "/" not in token or re.search(r"[\s<>*{}$]", token) or token.startswith(("/", ".")):
            continue
        if token.split("/")[0] in TRACKED_TOP_LEVEL:
            out.add(token)
    return out


def top_level_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom):
            names |= {a.asname or a.name for a in node.names}
    return names


def module_file(name: str) -> Path | None:
    base = PROJECT_ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def dangling_module_names(text: str) -> list[str]:
    """Dotted names under a first-party package that are neither a module nor a module's
    top-level name (``hub.kernel.errors``, ``hub.kernel.deadletters.describe_failure``)."""
    bad = []
    for token in set(_TICKED.findall(text)):
        dotted = re.fullmatch(r"[a-z_]+(\.[A-Za-z_][A-Za-z0-9_]*)+", token)
        if not dotted or token.split(".")[0] not in PACKAGES:
            continue
        if module_file(token):
            continue
        module, _, attr = token.rpartition(".")
        path = module_file(module)
        if path is None or attr not in top_level_names(path):
            bad.append(token)
    return sorted(bad)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(PROJECT_ROOT).as_posix())
def test_backticked_repository_paths_exist(doc: Path) -> None:
    paths = repo_paths(doc.read_text(encoding="utf-8"))
    missing = sorted(p for p in paths if not (PROJECT_ROOT / p).exists())
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"


def test_architecture_doc_names_existing_modules_and_is_linked() -> None:
    text = (PROJECT_ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert len(repo_paths(text)) > 40
    assert not dangling_module_names(text)
    assert "docs/architecture.md" in (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert "architecture.md" in (PROJECT_ROOT / "docs" / "README.md").read_text(encoding="utf-8")


def test_the_checks_catch_a_stale_path_and_module() -> None:
    text = "`hub/settings.py`, `hub/kernel/settings.py`, `var/keys/`, `connectors/cad/profiles/<name>.yaml`"
    assert repo_paths(text) == {"hub/settings.py", "hub/kernel/settings.py"}
    names = "`hub.kernel.errors` `hub.kernel.errors.HubError` `hub.kernel.errors.Nope` `hub.api.roles` `x.y`"
    assert dangling_module_names(names) == ["hub.api.roles", "hub.kernel.errors.Nope"]
