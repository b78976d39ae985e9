"""Role permissions and JWT checks, without a server."""

from __future__ import annotations

import itertools
import time

import jwt
import pytest

from api import tokens
from core.access import PERMISSIONS, ROLE_PERMISSIONS, ROLES, Principal, allowed, permissions_of

SECRET = "s" * 40


@pytest.mark.parametrize(
    ("role", "permission", "expected"),
    [
        ("viewer", "read:analysis", True),
        ("viewer", "read:dashboard", True),
        ("viewer", "read:rules", False),
        ("viewer", "write:analysis", False),
        ("analyst", "write:analysis", True),
        ("analyst", "write:feedback", True),
        ("analyst", "write:rules", False),
        ("manager", "write:rules", True),
        ("manager", "delete:rules", True),
        ("manager", "write:servers", True),
        ("manager", "write:users", False),
        ("viewer", "read:webhooks", False),
        ("analyst", "read:webhooks", False),
        ("manager", "read:webhooks", True),
        ("manager", "write:webhooks", True),
        ("manager", "delete:webhooks", True),
        ("admin", "delete:webhooks", True),
        ("admin", "write:users", True),
        ("admin", "anything:else", True),
        ("intruder", "read:analysis", False),
    ],
)
def test_role_permissions(role: str, permission: str, expected: bool) -> None:
    assert allowed(role, permission) is expected


def test_permissions_of_spells_out_what_a_role_holds() -> None:
    assert permissions_of("viewer") == ["read:analysis", "read:dashboard", "read:sources"]
    assert "write:rules" in permissions_of("manager")
    assert "write:users" not in permissions_of("manager")
    # The admin's `*:*` is spelled out as every permission there is, users' among them.
    assert permissions_of("admin") == sorted(PERMISSIONS)
    assert "write:users" in permissions_of("admin")
    assert permissions_of("intruder") == []


def test_the_roles_name_only_permissions_that_exist() -> None:
    named = {p for patterns in ROLE_PERMISSIONS.values() for p in patterns if "*" not in p}
    assert named <= set(PERMISSIONS)


def test_a_route_cannot_ask_for_a_permission_that_does_not_exist() -> None:
    from api.deps import require

    require("write:rules")
    with pytest.raises(ValueError, match="unknown permission 'write:rule'"):
        require("write:rule")


def test_each_role_holds_everything_the_one_below_holds() -> None:
    probes = ["read:analysis", "read:dashboard", "read:rules", "write:analysis", "write:rules"]
    for lower, higher in itertools.pairwise(ROLES):
        for permission in probes:
            assert not allowed(lower, permission) or allowed(higher, permission)


def test_token_round_trip_and_rejections() -> None:
    token = tokens.issue(SECRET, "mugpos", 60, Principal("alice", "manager"))
    assert tokens.verify(SECRET, "mugpos", token) == Principal("alice", "manager", "user")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], issuer="mugpos")
    assert claims["exp"] - claims["iat"] == 60
    with pytest.raises(tokens.InvalidToken, match=r"^token issuer not accepted$"):
        tokens.verify(SECRET, "other", token)
    with pytest.raises(tokens.InvalidToken, match=r"^token signature invalid$"):
        tokens.verify("t" * 40, "mugpos", token)
    now = int(time.time())
    unsigned = jwt.encode(
        {"sub": "a", "role": "admin", "iss": "mugpos", "iat": now, "exp": now + 60},
        None,
        algorithm="none",
    )
    with pytest.raises(tokens.InvalidToken, match=r"^token algorithm not accepted$"):
        tokens.verify(SECRET, "mugpos", unsigned)
    expired = jwt.encode(
        {"sub": "a", "role": "admin", "iss": "mugpos", "iat": now - 100, "exp": now - 11},
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(tokens.InvalidToken, match=r"^token expired$"):
        tokens.verify(SECRET, "mugpos", expired)
    within_leeway = jwt.encode(
        {"sub": "a", "role": "admin", "iss": "mugpos", "iat": now - 100, "exp": now - 5},
        SECRET,
        algorithm="HS256",
    )
    assert tokens.verify(SECRET, "mugpos", within_leeway).role == "admin"
    bad_role = jwt.encode(
        {"sub": "a", "role": "root", "iss": "mugpos", "iat": now, "exp": now + 60},
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(tokens.InvalidToken, match=r"^token role unknown$"):
        tokens.verify(SECRET, "mugpos", bad_role)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not.a.jwt", "token malformed"),
        ("", "token malformed"),
        (
            jwt.encode({"sub": "a", "role": "admin", "iss": "mugpos"}, SECRET),
            "token lacks a required claim",
        ),
        (
            jwt.encode(
                {
                    "sub": "a",
                    "role": "admin",
                    "iss": "mugpos",
                    "iat": 0,
                    "exp": 2**40,
                    "nbf": 2**39,
                },
                SECRET,
            ),
            "token not valid yet",
        ),
    ],
)
def test_a_refused_token_is_told_in_a_fixed_phrase(token: str, reason: str) -> None:
    """PyJWT's own message (which names claims, algorithms, versions) never reaches a client."""
    with pytest.raises(tokens.InvalidToken) as caught:
        tokens.verify(SECRET, "mugpos", token)
    assert str(caught.value) == reason
