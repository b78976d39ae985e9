"""Map a model's class names onto the roles positioning works with, so COCO weights work unchanged."""

from __future__ import annotations

from collections.abc import Mapping

ROLES = ("mug", "coaster", "table", "hazard")
OTHER = "other"
DEFAULT_CLASS_MAP: dict[str, list[str]] = {
    "mug": ["mug", "cup"],
    "coaster": ["coaster"],
    "table": ["table", "dining table"],
    "hazard": ["laptop", "keyboard", "cell phone", "book"],
}
# What `mugpos models import --class-map` writes into a manifest. COCO has no coaster class: a
# COCO model's coaster rules are not applicable (core.rules.engine), never failed.
PRESETS: dict[str, dict[str, list[str]]] = {
    "coco": {
        "mug": ["cup"],
        "table": ["dining table"],
        "hazard": ["laptop", "keyboard", "cell phone", "book"],
    },
    "mugpos": {role: [role] for role in ROLES},
}


def check_roles(mapping: Mapping[str, object]) -> None:
    """Refuse a map with a role positioning does not know."""
    unknown = set(mapping) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown role(s) {sorted(unknown)}; roles are {', '.join(ROLES)}")


class ClassMap:
    def __init__(self, roles: Mapping[str, list[str]] | None = None) -> None:
        mapping = DEFAULT_CLASS_MAP if roles is None else roles
        check_roles(mapping)
        self._role_of = {name.lower(): role for role, names in mapping.items() for name in names}

    def role(self, class_name: str) -> str:
        return self._role_of.get(class_name.lower(), OTHER)

    def roles_seen(self, class_names: list[str]) -> tuple[str, ...]:
        """The roles some of these classes map to, in ROLES order: what a model with these
        classes can see (a role none maps to is unseen, not absent)."""
        mapped = {self.role(name) for name in class_names}
        return tuple(role for role in ROLES if role in mapped)
