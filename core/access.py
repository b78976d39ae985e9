"""Who may do what: the roles of the original system and the permission each API route needs.

Permissions are `action:resource` strings. A role holds a tuple of patterns where `*` matches any
action or resource, as in the seed's RBAC table; users and worker control stay with admins (and
managers for control), so a manager cannot mint accounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["viewer", "analyst", "manager", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "analyst", "manager", "admin")

# Every permission there is: what the API's routes ask for (api.deps.require refuses any other).
PERMISSIONS: tuple[str, ...] = tuple(
    f"{action}:{resource}"
    for resource, actions in {
        "analysis": ("read", "write"),
        "dashboard": ("read",),
        "feedback": ("write",),
        "rules": ("read", "write", "delete"),
        "servers": ("read", "write"),
        "sources": ("read", "write", "delete"),
        "users": ("read", "write", "delete"),
        "webhooks": ("read", "write", "delete"),
    }.items()
    for action in actions
)

ROLE_PERMISSIONS: dict[Role, tuple[str, ...]] = {
    "viewer": ("read:analysis", "read:dashboard", "read:sources"),
    "analyst": (
        "read:analysis",
        "read:dashboard",
        "read:rules",
        "read:sources",
        "write:analysis",
        "write:feedback",
    ),
    "manager": (
        "read:analysis",
        "read:dashboard",
        "read:rules",
        "read:servers",
        "read:sources",
        "write:analysis",
        "write:feedback",
        "write:rules",
        "delete:rules",
        "write:sources",
        "delete:sources",
        "write:servers",
        "read:webhooks",
        "write:webhooks",
        "delete:webhooks",
    ),
    "admin": ("*:*",),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a user (JWT) or a machine client (API key)."""

    subject: str
    role: Role
    kind: Literal["user", "api_key"] = "user"


def allowed(role: str, permission: str) -> bool:
    """Whether `role` holds `permission` (`action:resource`); unknown roles hold nothing."""
    action, _, resource = permission.partition(":")
    for pattern in ROLE_PERMISSIONS.get(role, ()):  # type: ignore[call-overload]
        want_action, _, want_resource = pattern.partition(":")
        if want_action in ("*", action) and want_resource in ("*", resource):
            return True
    return False


def permissions_of(role: str) -> list[str]:
    """Every permission `role` holds, spelled out (no patterns): what a client shows or hides by,
    without a copy of this table."""
    return sorted(p for p in PERMISSIONS if allowed(role, p))
