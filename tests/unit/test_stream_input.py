"""The stream body's integer takes what JSON Schema calls an integer, and nothing looser."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.routes.streams import StreamInput

URL = "rtsp://camera-7.lan/stream1"


def test_a_whole_number_written_with_a_fraction_is_an_integer() -> None:
    # schemathesis sent 106.0 for change_threshold and got 422 validation_error.
    assert (
        StreamInput.model_validate({"url": URL, "change_threshold": 106.0}).change_threshold == 106
    )


@pytest.mark.parametrize("value", [2.5, "5", True])
def test_other_values_are_still_refused(value: object) -> None:
    with pytest.raises(ValidationError):
        StreamInput.model_validate({"url": URL, "change_threshold": value})
