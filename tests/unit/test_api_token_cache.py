"""Verified tokens are remembered until they expire; nothing else is."""

from __future__ import annotations

import time

import jwt
import pytest

from api import tokens
from core.access import Principal

SECRET = "s" * 40
OTHER = "o" * 40


def _token(exp_in_s: int, secret: str = SECRET) -> str:
    now = int(time.time())
    claims = {"sub": "ann", "role": "analyst", "iss": "mugpos", "iat": now, "exp": now + exp_in_s}
    return jwt.encode(claims, secret, algorithm="HS256")


def test_a_verified_token_is_answered_from_memory_for_its_secret_only(monkeypatch) -> None:
    token = _token(60)
    assert tokens.verify(SECRET, "mugpos", token) == Principal("ann", "analyst", "user")
    calls = []
    monkeypatch.setattr(tokens.jwt, "decode", lambda *a, **k: calls.append(a) or {})
    assert tokens.verify(SECRET, "mugpos", token).subject == "ann"
    assert calls == []  # not decoded again
    monkeypatch.undo()
    with pytest.raises(tokens.InvalidToken):  # another key (or issuer) is another entry
        tokens.verify(OTHER, "mugpos", token)


def test_tampered_and_expired_tokens_are_refused_every_time() -> None:
    token = _token(60)
    tokens.verify(SECRET, "mugpos", token)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(SECRET, "mugpos", token[:-2] + "xx")
    expired = _token(-60)
    for _ in range(2):
        with pytest.raises(tokens.InvalidToken):
            tokens.verify(SECRET, "mugpos", expired)
