"""The bucket's key layout and the key rules every backend enforces."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from infra.object_store import InvalidObjectKey
from infra.object_store.base import normalize_metadata, validate_key
from infra.object_store.keys import model_key, model_prefix, result_key, upload_key

WHEN = datetime(2026, 3, 4, 23, 30, tzinfo=UTC)


def test_upload_key_layout() -> None:
    assert upload_key("cam-1", "req-9", ".JPG", WHEN) == "user-uploads/cam-1/2026-03-04/req-9.jpg"


def test_result_key_layout() -> None:
    assert (
        result_key("req-9", "result.json", WHEN) == "analysis-results/2026/03/04/req-9/result.json"
    )


def test_model_key_layout() -> None:
    assert model_prefix("mugdet-synth", "1.0.0") == "models/mugdet-synth/1.0.0/"
    assert model_key("mugdet-synth", "1.0.0", "best.pt") == "models/mugdet-synth/1.0.0/best.pt"


def test_user_ids_cannot_escape_their_segment() -> None:
    key = upload_key("../../etc", "a/b/../c", "png", WHEN)
    assert key.startswith("user-uploads/etc/2026-03-04/")
    segments = key.split("/")
    assert len(segments) == 4
    assert not {".", ".."} & set(segments)


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "dir/", "a\\b", "./a"])
def test_invalid_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidObjectKey):
        validate_key(key)


def test_metadata_is_lowercased_and_checked() -> None:
    assert normalize_metadata({"Request-ID": "r1"}) == {"request-id": "r1"}
    with pytest.raises(InvalidObjectKey):
        normalize_metadata({"bad key": "x"})
    with pytest.raises(InvalidObjectKey):
        normalize_metadata({"k": "café"})
