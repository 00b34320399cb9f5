"""The test tree mirrors the source tree (``docs/architecture.md``, "Where tests live").

A test of ``hub/kernel/log.py`` lives in ``tests/unit/hub/kernel/`` (pure) or
``tests/integration/hub/kernel/`` (real services); tests of the non-Python trees mirror them
too (``tests/unit/deploy/``, ``tests/unit/docs/``). So every ``test_*.py`` under
``tests/unit/`` and ``tests/integration/`` sits in a directory whose path below that root is
an existing directory of :data:`SOURCE_ROOTS`, or is one of the few cross-cutting tests at the
root (:data:`CROSS_CUTTING`). ``tests/e2e/`` (the product as a whole) and ``tests/contracts/``
(port contracts shared by unit and integration tests) are not mirrored.

Every directory under ``tests/`` (except ``tests/data/``) is a package, so test modules are
imported by their full dotted name: the mirrored layout repeats basenames
(``tests/unit/hub/kernel/test_binding.py``, ``tests/integration/hub/kernel/test_binding.py``),
which pytest's default import mode cannot tell apart otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import PurePosixPath

from hub.kernel.settings import PROJECT_ROOT

#: top-level source directories a test directory may mirror
SOURCE_ROOTS = frozenset({"hub", "connectors", "projections", "schemas", "bench", "deploy", "docs"})
#: the mirrored roots of the test tree
MIRRORED = ("tests/unit", "tests/integration")
#: tests that check the whole tree rather than one module, each with its reason
CROSS_CUTTING = {
    "tests/unit/test_architecture.py": "the layer rule over every source module",
    "tests/unit/test_layout.py": "this rule over the test tree",
    "tests/unit/test_privacy_guards.py": "no PHI in logs, errors or dead letters, in every layer",
    "tests/integration/test_services.py": "the shared services and the session fixtures",
    "tests/unit/test_teardown_watchdog.py": "the watchdog over every test session's teardown",
}
#: directories under ``tests/`` that are data, not packages
NOT_PACKAGES = ("tests/data",)


def misplaced(tests: Iterable[str], is_source_dir: Callable[[str], bool]) -> list[str]:
    """The test files (repository-relative POSIX paths) under :data:`MIRRORED` that break the
    rule, each with the reason; ``is_source_dir`` says whether a repository path is a directory."""
    out = []
    for test in sorted(tests):
        path = PurePosixPath(test)
        root = next((r for r in MIRRORED if path.is_relative_to(r)), None)
        if root is None:
            continue
        mirrored = path.parent.relative_to(root)
        if mirrored == PurePosixPath("."):
            if test not in CROSS_CUTTING:
                out.append(f"{test}: at the root of {root}/, but not in CROSS_CUTTING")
        elif mirrored.parts[0] not in SOURCE_ROOTS or not is_source_dir(str(mirrored)):
            out.append(f"{test}: {mirrored}/ is not a source directory ({', '.join(sorted(SOURCE_ROOTS))})")
    return out


def _test_files() -> list[str]:
    return [
        p.relative_to(PROJECT_ROOT).as_posix()
        for root in MIRRORED
        for p in (PROJECT_ROOT / root).rglob("test_*.py")
    ]


def test_every_test_directory_mirrors_a_source_directory() -> None:
    tests = _test_files()
    assert len(tests) > 50, f"found only {len(tests)} test files under {MIRRORED}"
    problems = misplaced(tests, lambda rel: (PROJECT_ROOT / rel).is_dir())
    assert not problems, "\n".join(problems)


def test_cross_cutting_tests_exist() -> None:
    missing = [t for t in CROSS_CUTTING if not (PROJECT_ROOT / t).is_file()]
    assert not missing, f"CROSS_CUTTING names files that do not exist: {missing}"


def test_every_test_directory_is_a_package() -> None:
    tests = PROJECT_ROOT / "tests"
    missing = [
        d.relative_to(PROJECT_ROOT).as_posix()
        for d in (tests, *(p for p in tests.rglob("*") if p.is_dir()))
        if d.name != "__pycache__"
        and not any(d.relative_to(PROJECT_ROOT).is_relative_to(n) for n in NOT_PACKAGES)
        and not (d / "__init__.py").is_file()
    ]
    assert not missing, f"directories under tests/ without __init__.py: {missing}"


def test_rule_names_each_misplaced_test_and_its_reason() -> None:
    source_dirs = {"hub", "hub/kernel", "connectors", "connectors/cad", "deploy"}
    problems = misplaced(
        [
            "tests/unit/hub/kernel/test_log_pure.py",  # mirrors hub/kernel
            "tests/integration/connectors/cad/test_redrive.py",  # mirrors connectors/cad
            "tests/unit/deploy/test_manifests.py",  # mirrors a non-Python tree
            "tests/unit/test_architecture.py",  # cross-cutting
            "tests/e2e/test_demo_rerun.py",  # not mirrored
            "tests/unit/log/test_log_pure.py",  # no source directory log/
            "tests/unit/hub/core/test_errors.py",  # hub/core does not exist
            "tests/integration/test_anything.py",  # at the root, not cross-cutting
            "tests/unit/var/test_state.py",  # an existing directory, but not source
        ],
        lambda rel: rel in source_dirs or rel == "var",
    )
    assert [p.split(":")[0] for p in problems] == [
        "tests/integration/test_anything.py",
        "tests/unit/hub/core/test_errors.py",
        "tests/unit/log/test_log_pure.py",
        "tests/unit/var/test_state.py",
    ]
    assert "not in CROSS_CUTTING" in problems[0]
    assert "hub/core/ is not a source directory" in problems[1]
