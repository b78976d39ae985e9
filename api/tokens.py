"""JWT issue and check (PyJWT). Only HMAC algorithms are accepted, from a fixed list, so neither
`alg=none` nor an RSA/HMAC confusion token can pass."""

from __future__ import annotations

import time
from collections import OrderedDict

import jwt

from core.access import ROLES, Principal

ALGORITHM = "HS256"
LEEWAY_S = 10


class InvalidToken(ValueError):
    """Why a token is refused, in a fixed phrase (`REASONS`): clients see it as the problem's
    detail, so PyJWT's own messages, which vary between its versions, never reach them."""


# Anything else PyJWT refuses (DecodeError: not a JWT, bad base64 or JSON...) is MALFORMED.
REASONS: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not valid yet"),
    (jwt.InvalidSignatureError, "token signature invalid"),
    (jwt.InvalidAlgorithmError, "token algorithm not accepted"),
    (jwt.InvalidIssuerError, "token issuer not accepted"),
    (jwt.MissingRequiredClaimError, "token lacks a required claim"),
)
MALFORMED = "token malformed"
UNKNOWN_ROLE = "token role unknown"


def issue(secret: str, issuer: str, ttl_s: int, principal: Principal) -> str:
    now = int(time.time())
    claims = {"sub": principal.subject, "role": principal.role, "iss": issuer, "iat": now}
    claims["exp"] = now + ttl_s
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: str, issuer: str, token: str) -> Principal:
    """The token's principal, or InvalidToken. A client sends the same token on every request:
    one already verified is answered from memory until its `exp` (checking the HMAC and decoding
    the claims again cost about 5 % of an upload's CPU)."""
    key = (secret, issuer, token)
    known = _verified.get(key)
    if known is not None and time.time() < known[1]:
        return known[0]
    principal, expires = _verify(secret, issuer, token)
    _verified[key] = (principal, expires)
    if len(_verified) > _VERIFIED_MAX:
        _verified.popitem(last=False)
    return principal


_VERIFIED_MAX = 10_000
_verified: OrderedDict[tuple[str, str, str], tuple[Principal, float]] = OrderedDict()


def _verify(secret: str, issuer: str, token: str) -> tuple[Principal, float]:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=issuer,
            leeway=LEEWAY_S,
            options={"require": ["exp", "iat", "iss", "sub"]},
        )
    except jwt.InvalidTokenError as exc:
        reason = next((text for kind, text in REASONS if isinstance(exc, kind)), MALFORMED)
        raise InvalidToken(reason) from None
    if claims.get("role") not in ROLES:
        raise InvalidToken(UNKNOWN_ROLE)
    return Principal(str(claims["sub"]), claims["role"], "user"), float(claims["exp"])
