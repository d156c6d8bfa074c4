"""Names stock CoreDNS and ExternalDNS's TXT registry can take: room for the registry's prefix, no wildcard,
valid labels."""

from __future__ import annotations

import pytest

from fleetdns.dnsname import InvalidDNSNameError, check_publishable

pytestmark = pytest.mark.unit


def name_of_length(total: int) -> str:
    """``w.bbb….bbb.example.com`` of exactly ``total`` octets, every label short enough."""
    middle = total - len("w.") - len(".example.com")
    labels = ["b" * 40] * (middle // 41) + (["b" * (middle % 41 - 1)] if middle % 41 > 1 else [])
    name = ".".join(["w", *labels, "example.com"])
    name = name if len(name) == total else "ww" + name[1:]  # one octet short when the last label came out empty
    assert len(name) == total
    return name


# ExternalDNS's TXT registry stores the ownership of `web.example.com` at `cname-web.example.com`:
# the first label may have 63 - 6 = 57 octets, the name 253 - 6 = 247.
@pytest.mark.parametrize("name", [
    "a" * 57 + ".example.com",
    name_of_length(247),
    "_acme-challenge.example.com",
])
def test_check_publishable_accepts_names_with_room_for_the_registry_prefix(name: str) -> None:
    assert check_publishable(name.upper() + ".") == name


@pytest.mark.parametrize(("name", "says"), [
    ("a" * 58 + ".example.com", "first label .* is 58 characters; at most 57 .* 'cname-'"),
    (name_of_length(248), "is 248 characters; at most 247"),
    ("*.example.com", "wildcard"),
    ("shop.*.example.com", "'\\*' is only allowed as the leftmost label"),
    ("bad_label-.example.com", "may hold only letters"),
])
def test_check_publishable_refuses_what_stock_coredns_or_the_registry_cannot_take(name: str, says: str) -> None:
    with pytest.raises(InvalidDNSNameError, match=says):
        check_publishable(name)
