"""Validation: every target has one canonical form."""

from __future__ import annotations

import pytest

from fleetdns.skydns.targets import canonical_target

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("record_type", "given", "canonical"), [
    ("A", " 192.0.2.1", "192.0.2.1"),
    ("AAAA", "2001:DB8:0::1", "2001:db8::1"),
    ("CNAME", "LB.Example.org.", "lb.example.org"),
    ("NS", "NS-East.GSLB.example.org.", "ns-east.gslb.example.org"),
    ("SRV", "10  5 5060 SIP.example.org", "10 5 5060 sip.example.org."),
    ("MX", "10 Mail.example.org.", "10 mail.example.org"),
    ("TXT", ' "Keep Case" ', ' "Keep Case" '),
])
def test_targets_have_one_canonical_form(record_type, given, canonical):
    assert canonical_target(record_type, given) == canonical
