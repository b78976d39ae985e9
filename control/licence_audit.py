"""Which licences the installed runtime dependencies carry, and whether the project (AGPL-3.0-or-
later) may be combined with each.

The audit reads the installed distributions' own metadata (`importlib.metadata`), walking the
`Requires-Dist` closure from the project with markers evaluated for this interpreter and platform:
what is audited is what this environment would run, so a CPU image and a GPU image each audit their
own installed set. A licence is found in the order most to least precise: the SPDX
`License-Expression`, a `License` field that is (or is a known spelling of) an SPDX expression,
then the trove classifiers. Anything unknown or incompatible fails unless a reviewed exception
names the package and the licence it was reviewed under, so a licence that changes in a later
release is reviewed again."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import Enum
from importlib import metadata
from pathlib import Path

from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "mugpos"


class Verdict(Enum):
    COMPATIBLE = "compatible"
    UNKNOWN = "unknown"
    INCOMPATIBLE = "incompatible"


# Licences whose terms let their code be combined into an AGPL-3.0 work (the FSF's list of
# GPLv3-compatible licences; Apache-2.0 and MPL-2.0 are compatible in that direction).
COMPATIBLE = frozenset(
    {
        "0BSD", "AGPL-3.0-only", "AGPL-3.0-or-later", "Apache-2.0", "BSD-2-Clause",
        "BSD-3-Clause", "BSD-3-Clause-Clear", "BSL-1.0", "CC0-1.0", "GPL-2.0-or-later",
        "GPL-3.0-only", "GPL-3.0-or-later", "HPND", "ISC", "LGPL-2.1-only", "LGPL-2.1-or-later",
        "LGPL-3.0-only", "LGPL-3.0-or-later", "MIT", "MIT-0", "MIT-CMU", "MPL-2.0", "NCSA",
        "PSF-2.0", "Python-2.0", "Unicode-3.0", "Unicode-DFS-2016", "Unlicense", "UPL-1.0",
        "X11", "Zlib", "ZPL-2.1",
    }
)  # fmt: skip
# Licences known not to combine with AGPL-3.0: GPLv2-only copyleft, field-of-use and "source
# available" terms, and every proprietary `LicenseRef-`.
INCOMPATIBLE = frozenset(
    {
        "AGPL-1.0-only", "Apache-1.1", "BSD-4-Clause", "BUSL-1.1", "CC-BY-NC-4.0",
        "CC-BY-NC-SA-4.0", "CNRI-Python", "CPOL-1.02", "EPL-1.0", "GPL-2.0-only",
        "LicenseRef-Proprietary", "SSPL-1.0",
    }
)  # fmt: skip

# `License` fields seen in the wild that are not SPDX but mean one licence unambiguously.
SPELLINGS = {
    "apache": "Apache-2.0",
    "apache 2": "Apache-2.0",
    "apache 2.0": "Apache-2.0",
    "apache license 2.0": "Apache-2.0",
    "apache license, version 2.0": "Apache-2.0",
    "apache software license": "Apache-2.0",
    "mit license": "MIT",
    "bsd": "BSD-3-Clause",
    "3-clause bsd license": "BSD-3-Clause",
    "bsd license": "BSD-3-Clause",
    "isc license": "ISC",
}
# Trove classifiers (the last part of "License :: …") to SPDX.
CLASSIFIERS = {
    "Apache Software License": "Apache-2.0",
    "BSD License": "BSD-3-Clause",
    "GNU Affero General Public License v3": "AGPL-3.0-only",
    "GNU Affero General Public License v3 or later (AGPLv3+)": "AGPL-3.0-or-later",
    "GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    "GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    "GNU Lesser General Public License v2 or later (LGPLv2+)": "LGPL-2.1-or-later",
    "GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "GNU Lesser General Public License v3 or later (LGPLv3+)": "LGPL-3.0-or-later",
    "ISC License (ISCL)": "ISC",
    "MIT License": "MIT",
    "MIT No Attribution License (MIT-0)": "MIT-0",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "Other/Proprietary License": "LicenseRef-Proprietary",
    "Python Software Foundation License": "PSF-2.0",
    "The Unlicense (Unlicense)": "Unlicense",
    "zlib/libpng License": "Zlib",
    "Zope Public License": "ZPL-2.1",
}
# Deprecated SPDX ids still found in metadata: a bare GNU id means "-only", a `+` "-or-later".
_DEPRECATED_GNU = re.compile(r"^((?:A|L)?GPL-[23]\.[01])(\+?)$")
_TOKENS = re.compile(r"\(|\)|[^\s()]+")


@dataclass(frozen=True)
class ReviewedException:
    """A reviewed exception: packages matching `package` (a glob) under exactly `licence`."""

    package: str
    licence: str
    reason: str

    def covers(self, finding: Finding) -> bool:
        return fnmatch.fnmatch(finding.package, self.package) and finding.licence == self.licence


@dataclass(frozen=True)
class Finding:
    package: str
    version: str
    licence: str  # an SPDX expression, or a description of what the metadata says
    source: str  # where it was read: License-Expression, License, classifier, or nothing
    verdict: Verdict
    exception: ReviewedException | None = None  # the review that accepts it, if any

    @property
    def accepted(self) -> bool:
        return self.verdict is Verdict.COMPATIBLE or self.exception is not None


class AuditError(Exception):
    """The audit cannot run: no such project installed, or an unreadable exceptions file."""


def load_exceptions(path: Path) -> list[ReviewedException]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AuditError(f"cannot read {path}: {exc}") from exc
    entries = data.get("exception", [])
    found = []
    for number, entry in enumerate(entries, 1):
        missing = {"package", "licence", "reason"} - set(entry)
        if missing or not str(entry.get("reason", "")).strip():
            raise AuditError(f"{path}: exception {number} needs package, licence and a reason")
        found.append(ReviewedException(entry["package"], entry["licence"], entry["reason"].strip()))
    return found


def runtime_closure(
    root: str = PROJECT, path: list[str] | None = None
) -> list[metadata.Distribution]:
    """The installed distributions `root` needs at run time (no extras of its own), each once.

    Raises AuditError when `root` or a dependency whose marker applies here is not installed."""
    found: dict[str, metadata.Distribution] = {}
    visited: set[tuple[str, frozenset[str]]] = set()
    pending: list[tuple[str, frozenset[str], str]] = [(root, frozenset(), "")]
    while pending:
        name, extras, wanted_by = pending.pop()
        key = canonicalize_name(name)
        if (key, extras) in visited:
            continue
        visited.add((key, extras))
        try:
            search = {"path": path} if path is not None else {}
            dist = next(iter(metadata.distributions(name=name, **search)))
        except StopIteration:
            raise AuditError(
                f"{name} is not installed" + (f" (needed by {wanted_by})" if wanted_by else "")
            ) from None
        found.setdefault(key, dist)
        environments = [{"extra": extra} for extra in sorted(extras)] or [{"extra": ""}]
        for line in dist.requires or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or any(marker.evaluate(env) for env in environments):
                pending.append((requirement.name, frozenset(requirement.extras), key))
    found.pop(canonicalize_name(root), None)
    return [found[key] for key in sorted(found)]


def everything_installed(
    root: str = PROJECT, path: list[str] | None = None
) -> list[metadata.Distribution]:
    """Every installed distribution but `root`, each once: an image's whole set, including what
    its build added beside the project's own requirements (TensorRT in the GPU image)."""
    search = {"path": path} if path is not None else {}
    found: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions(**search):
        found.setdefault(canonicalize_name(dist.metadata["Name"]), dist)
    found.pop(canonicalize_name(root), None)
    return [found[key] for key in sorted(found)]


def licence_of(dist: metadata.Distribution) -> tuple[str, str]:
    """(licence as an SPDX expression when one can be read, where it was read)."""
    meta = dist.metadata
    expression = meta.get("License-Expression")
    if expression:
        return _canonical(expression) or expression, "License-Expression"
    text = (meta.get("License") or "").strip()
    if text and "\n" not in text:  # a one-line name, not the licence's full text
        spdx = _canonical(text) or SPELLINGS.get(text.lower())
        if spdx:
            return spdx, "License"
    classified = sorted(
        {
            CLASSIFIERS.get(c.rsplit(" :: ", 1)[-1], f"classifier: {c.rsplit(' :: ', 1)[-1]}")
            for c in meta.get_all("Classifier") or []
            if c.startswith("License :: ") and c != "License :: OSI Approved"
        }
    )
    if classified:  # several classifiers may mean "all of these" or a choice: assume all
        return " AND ".join(classified), "classifier"
    return (f"License: {text[:60]}" if text else "none declared"), "nothing"


def _canonical(text: str) -> str | None:
    try:
        expression = canonicalize_license_expression(text)
    except InvalidLicenseExpression:
        return None
    return " ".join(_modern(token) for token in expression.split(" "))


def _modern(token: str) -> str:
    match = _DEPRECATED_GNU.match(token)
    if match is None:
        return token
    return f"{match[1]}-{'or-later' if match[2] else 'only'}"


def verdict(expression: str) -> Verdict:
    """Compatibility of an SPDX expression: OR takes the best choice, AND the worst part, and a
    `WITH` exception (which only adds permissions) is judged by its licence."""
    tokens = _TOKENS.findall(expression)
    try:
        result, rest = _or(tokens)
    except IndexError:
        return Verdict.UNKNOWN
    return result if not rest else Verdict.UNKNOWN


_RANK = [Verdict.INCOMPATIBLE, Verdict.UNKNOWN, Verdict.COMPATIBLE]


def _or(tokens: list[str]) -> tuple[Verdict, list[str]]:
    best, tokens = _and(tokens)
    while tokens and tokens[0] == "OR":
        other, tokens = _and(tokens[1:])
        best = max(best, other, key=_RANK.index)
    return best, tokens


def _and(tokens: list[str]) -> tuple[Verdict, list[str]]:
    worst, tokens = _term(tokens)
    while tokens and tokens[0] == "AND":
        other, tokens = _term(tokens[1:])
        worst = min(worst, other, key=_RANK.index)
    return worst, tokens


def _term(tokens: list[str]) -> tuple[Verdict, list[str]]:
    if tokens[0] == "(":
        inner, rest = _or(tokens[1:])
        if not rest or rest[0] != ")":
            raise IndexError("unbalanced parentheses")
        return inner, rest[1:]
    licence, rest = tokens[0], tokens[1:]
    if rest and rest[0] == "WITH":
        rest = rest[2:]
    if licence in COMPATIBLE:
        return Verdict.COMPATIBLE, rest
    if licence in INCOMPATIBLE or licence.startswith("LicenseRef-"):
        return Verdict.INCOMPATIBLE, rest
    return Verdict.UNKNOWN, rest


def audit(
    exceptions: Iterable[ReviewedException],
    root: str = PROJECT,
    path: list[str] | None = None,
    *,
    installed: bool = False,
) -> list[Finding]:
    """One finding per runtime dependency (`installed`: per installed distribution), with the
    exception that accepts it where one does."""
    reviewed = list(exceptions)
    findings = []
    dists = everything_installed(root, path) if installed else runtime_closure(root, path)
    for dist in dists:
        licence, source = licence_of(dist)
        finding = Finding(
            canonicalize_name(dist.metadata["Name"]),
            dist.version,
            licence,
            source,
            # Descriptions (nothing declared, an unmapped classifier) parse as no licence: unknown.
            verdict(licence) if source != "nothing" else Verdict.UNKNOWN,
        )
        if finding.verdict is not Verdict.COMPATIBLE:
            review = next((e for e in reviewed if e.covers(finding)), None)
            finding = replace(finding, exception=review)
        findings.append(finding)
    return findings


def unused(
    exceptions: Iterable[ReviewedException], findings: list[Finding]
) -> list[ReviewedException]:
    """Exceptions that accept nothing here (another image's packages, or a stale review)."""
    return [e for e in exceptions if not any(e.covers(f) for f in findings)]
