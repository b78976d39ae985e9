"""Which address a request is rate-limited, throttled and audited as: X-Forwarded-For counts only
when it arrives through a trusted proxy, read right to left."""

from __future__ import annotations

import pytest

from api.client_ip import resolve, trusted_networks
from core.config import ConfigError, load_settings

PROXIES = trusted_networks("10.0.0.0/8,192.0.2.7/32,2001:db8::/32")


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        # An untrusted peer's header is its own claim: ignored.
        ("203.0.113.9", ["1.2.3.4"], "203.0.113.9"),
        ("127.0.0.1", ["1.2.3.4"], "127.0.0.1"),
        # Through a trusted proxy: the address it appended.
        ("10.1.2.3", ["198.51.100.4"], "198.51.100.4"),
        # A client prepending a fake address gains nothing: the right-most untrusted one counts.
        ("10.1.2.3", ["6.6.6.6, 198.51.100.4"], "198.51.100.4"),
        ("10.1.2.3", ["6.6.6.6", "198.51.100.4"], "198.51.100.4"),  # header sent twice
        # Chains of trusted proxies are walked past.
        ("10.1.2.3", ["6.6.6.6, 198.51.100.4, 192.0.2.7, 10.9.9.9"], "198.51.100.4"),
        # Every hop trusted: the left-most is as far as anyone knows.
        ("10.1.2.3", ["10.0.0.5, 192.0.2.7"], "10.0.0.5"),
        # No header from a trusted proxy: the proxy itself.
        ("10.1.2.3", [], "10.1.2.3"),
        # A hop that is no address stops the walk at the last trusted hop.
        ("10.1.2.3", ["198.51.100.4, bogus"], "10.1.2.3"),
        ("10.1.2.3", ["bogus, 10.0.0.8"], "10.0.0.8"),
        # Ports, brackets, IPv6, IPv4-mapped IPv6 and empty items.
        ("10.1.2.3", ["198.51.100.4:5555"], "198.51.100.4"),
        ("10.1.2.3", ["[2001:db9::1]:443"], "2001:db9::1"),
        ("2001:db8::2", ["2001:DB9:0::1"], "2001:db9::1"),
        ("::ffff:10.1.2.3", ["::ffff:198.51.100.4"], "198.51.100.4"),
        ("10.1.2.3", ["198.51.100.4, , "], "198.51.100.4"),
        # Not a socket address at all (a test client, a unix socket).
        ("testclient", ["1.2.3.4"], "testclient"),
        (None, ["1.2.3.4"], "unknown"),
    ],
)
def test_resolve(peer: str | None, forwarded_for: list[str], expected: str) -> None:
    assert resolve(peer, forwarded_for, PROXIES) == expected


def test_no_trusted_proxies_by_default() -> None:
    settings = load_settings(_env_file=None)
    assert settings.trusted_proxies == ""
    assert resolve("10.1.2.3", ["1.2.3.4"], trusted_networks(settings.trusted_proxies)) == (
        "10.1.2.3"
    )


def test_trusted_proxies_are_validated_and_normalized() -> None:
    settings = load_settings(_env_file=None, trusted_proxies=" 10.0.0.1/8 , 192.0.2.7,::1 ")
    assert settings.trusted_proxies == "10.0.0.0/8,192.0.2.7/32,::1/128"
    with pytest.raises(ConfigError, match=r"MUGPOS_TRUSTED_PROXIES: .*'proxy\.local' is not an IP"):
        load_settings(_env_file=None, trusted_proxies="10.0.0.1,proxy.local")
