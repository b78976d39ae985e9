"""What the webhook client refuses from a URL alone, before any lookup: bad shapes are reasons,
never exceptions (the API answers them with 422, the dispatcher dead-letters them)."""

from __future__ import annotations

import pytest

from infra.webhook_client import check_url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://[::1/x", "not a valid URL"),
        ("http://" + "a" * 70 + ".example.org/", "not a valid URL"),
        ("http://example.org:99999/", "not a valid URL"),
        ("http://example.org:0/", "port 0 is no port"),
        ("ftp://example.org/", "a webhook URL starts with http:// or https://"),
        ("https:///path", "a webhook URL names a host"),
        ("http://user:pw@example.org/", "a webhook URL carries no credentials"),
        ("http://127.0.0.1:8080/hook", "127.0.0.1 is a loopback address"),
        ("http://[::1]/hook", "::1 is a loopback address"),
        ("http://169.254.169.254/latest", "169.254.169.254 is a link-local address"),
        ("http://10.0.0.7/", "10.0.0.7 is a private address"),
    ],
)
def test_a_url_that_cannot_be_a_target_gets_a_reason(url: str, why: str) -> None:
    assert (check_url(url, []) or "").startswith(why)


def test_public_addresses_names_and_allowed_networks_pass() -> None:
    assert check_url("https://93.184.215.14/hook", []) is None
    assert check_url("https://hooks.example.org/mugpos", []) is None  # checked when resolved
    assert check_url("http://10.0.0.7/", ["10.0.0.0/24"]) is None
