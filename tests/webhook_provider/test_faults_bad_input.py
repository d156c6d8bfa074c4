"""Bad input to the real webhook on a real etcd: requests generated from its OpenAPI description (schemathesis, valid
and invalid, every operation) and from hand-made strategies aimed at the domain filter, the prefix and the decoder.

What must hold for every request (docs/design/faults.md, issue 17): no 5xx (etcd is up), 400 only for a body that is
not a Changes document (or endpoint array), by the description's own schemas (a Changes document whose endpoints
cannot be stored gets 204), only documented statuses; and after them all: canaries outside the prefix and under it
outside the domain filter unchanged byte for byte, no key written outside the webhook's key space or for a name
outside the filter, the process up and answering.
"""

from __future__ import annotations

import json
import re
import string
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from rig import EtcdServer
from rig.region import WebhookProvider
from tests.support.etcd import etcd_kv
from tests.support.soak import BAD_INPUT, times

pytestmark = [pytest.mark.etcd, pytest.mark.fault]

DESCRIPTION = Path(__file__).resolve().parents[2] / "webhook_provider" / "openapi.yaml"
MEDIA_TYPE = "application/external.dns.webhook+json;version=1"  # spelled out: the test checks the wire
ZONE, EXCLUDED = "example.org", "private.example.org"
LIMIT = 256 * 1024  # --max-request-bytes for this webhook: small, so oversized bodies are cheap to send
CLIENT_TIMEOUT = 15.0  # ExternalDNS's: a slower answer counts as the process not answering


# ---- the oracle: what the description says the answer must be ----------------------------------------------------

def _description() -> dict[str, Any]:
    return yaml.safe_load(DESCRIPTION.read_text())


def _validator(document: dict[str, Any], name: str) -> jsonschema_rs.Validator:
    """A validator of one of the description's schemas (its $refs resolved within the description)."""
    return jsonschema_rs.validator_for({**document["components"]["schemas"][name],
                                        "components": document["components"]})


def _plain(value: Any) -> Any:
    """``value`` with lone surrogates replaced (the validator needs UTF-8; they never change a JSON type)."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {_plain(key): _plain(item) for key, item in value.items()}
    return value


class NotJSON(Exception):
    """The body is not a JSON text (UTF-8, no byte-order mark), or nests deeper than the decoder goes."""


NOT_AN_INTEGER = 0.5  # every JSON float: a number no schema type but "number" accepts (JSON Schema calls 60.0 an
# integer; Python's decoder, like Go's, does not)


def _decode(body: bytes) -> Any:
    """The body as JSON, each float (and NaN, Infinity) replaced by ``NOT_AN_INTEGER``."""
    try:
        text = body.decode("utf-8", "surrogatepass")
        return json.loads(text, parse_float=lambda _: NOT_AN_INTEGER,
                          parse_constant=lambda _: NOT_AN_INTEGER) if text.strip() else None
    except (ValueError, RecursionError) as error:
        raise NotJSON(str(error)) from None


class Oracle:
    """The status the description promises for a request, from the request alone."""

    def __init__(self) -> None:
        self.document = _description()
        self.changes = _validator(self.document, "Changes")
        self.endpoints = _validator(self.document, "EndpointArray")

    def documented(self, path: str, method: str) -> set[int]:
        return {int(code) for code in self.document["paths"][path][method.lower()]["responses"]}

    def expected(self, request: requests.PreparedRequest) -> int:
        path, method = request.path_url.split("?")[0], request.method or ""
        if method == "GET":
            return 200
        content_type = (request.headers.get("Content-Type") or "").replace(" ", "").lower()
        if content_type and content_type != MEDIA_TYPE and content_type.split(";")[0] != "application/json":
            return 415
        body = _body_bytes(request)
        if len(body) > LIMIT:
            return 413
        try:
            data = _plain(_decode(body))
        except NotJSON:
            return 400
        if path == "/adjustendpoints":
            return 200 if self.endpoints.is_valid(data) else 400
        if not self.changes.is_valid(data):
            return 400
        olds = data.get("updateOld") or data.get("UpdateOld") or []
        news = data.get("updateNew") or data.get("UpdateNew") or []
        return 204 if len(olds) == len(news) else 400


def _body_bytes(request: requests.PreparedRequest) -> bytes:
    body = request.body
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, bytes):
        return body
    return b"".join(body)  # a chunked body, kept as its chunks (see Sent)


# ---- generated requests --------------------------------------------------------------------------------------------

@dataclass(frozen=True, repr=False)
class Sent:
    """One request to send: method, path, headers, body (chunks: sent with Transfer-Encoding: chunked)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes | tuple[bytes, ...] | None = None
    health_port: bool = False

    @property
    def content(self) -> bytes:
        return b"".join(self.body) if isinstance(self.body, tuple) else (self.body or b"")

    def __repr__(self) -> str:  # hypothesis prints failing examples: a 256 KiB body would drown the report
        return f"Sent({self.method} {self.path}, {self.headers}, {self.content[:200]!r}, {len(self.content)} bytes)"


HEALTH_PATHS = {"/healthz", "/readyz", "/metrics"}
# Sent every few generated requests: hypothesis makes each request without parameters (the GETs) only once.
READS = (Sent("GET", "/records", {"Accept": MEDIA_TYPE}), Sent("GET", "/", {"Accept": MEDIA_TYPE}),
         Sent("GET", "/readyz", {}, health_port=True), Sent("GET", "/metrics", {}, health_port=True))
READ_EVERY = 20


def _from_schemathesis() -> st.SearchStrategy[Sent]:
    """Every operation of the description, positive and negative cases."""
    schema = schemathesis.openapi.from_path(str(DESCRIPTION))
    operations = [result.ok() for result in schema.get_all_operations()]
    strategies = [operation.as_strategy(generation_mode=mode) for operation in operations
                  for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]

    def to_sent(case: Any) -> Sent:
        prepared = requests.Request(**case.as_transport_kwargs(base_url="http://fuzz.invalid")).prepare()
        body = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
        headers = {k: v for k, v in prepared.headers.items() if k.lower() in ("content-type", "accept")}
        return Sent(case.method, case.path, headers, body, case.path in HEALTH_PATHS)

    return st.one_of(strategies).map(to_sent)


_INSIDE = ["example.org", "app.example.org", "a.b.example.org", "APP.Example.ORG.", "_sip._tcp.example.org",
           "xn--bcher-kva.example.org", "bücher.example.org", "a-app.example.org", "cname-app.example.org",
           "\u212aelvin.example.org", "x" * 63 + ".example.org"]
_OUTSIDE = ["example.org.evil.com", "evil-example.org", "notexample.org", "example.com", "org", "", ".", "..",
            "..example.org", "a..example.org", "*.example.org", "a-*.example.org", "private.example.org",
            "x.private.example.org", "PRIVATE.example.org.", "a/b.example.org", "../../canary", "example.org/../x",
            "a\\.b.example.org", "a b.example.org", "a\u0000.example.org", "\ud800.example.org", "%2e.example.org",
            "x" * 64 + ".example.org", ".".join(["abcdefgh"] * 40) + ".example.org", "example.org\n.evil.com",
            "ⓔxample.org", "example.org\u3002", "com/other/app"]
_TYPES = ["A", "AAAA", "CNAME", "TXT", "SRV", "MX", "NS", "PTR", "NAPTR", "a", " cname ", "", "*", "TYPE65"]
_TARGETS = ["192.0.2.1", "192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1", "300.1.1.1", "", " ", "192.0.2.1/24",
            "app.example.org", "target.example.org.", ".", "10 5 443 target.example.org", "10 mail.example.org",
            '"heritage=external-dns,external-dns/owner=fuzz"', "x" * 300, "1 2 3", "\ud800", "../../x"]
_VIEWS = ["east", "region-east", "", "../x", "a/b", "-x", "EAST", "x" * 41, "region-", ".", "..", "east/..",
          "\u0000", "skydns", "east\n"]
_PROPERTIES = ["webhook/view", "webhook/weights", "webhook/nameserver", "coredns/group", "aws/weight", "", "x"]


def _names() -> st.SearchStrategy[str]:
    label = st.text(alphabet=string.ascii_letters + string.digits + "-_*./\\ ", min_size=0, max_size=12)
    suffix = st.sampled_from(["example.org", "private.example.org", "evil.com", "", "example.org."])
    made = st.tuples(label, suffix).map(lambda pair: f"{pair[0]}.{pair[1]}" if pair[1] else pair[0])
    return st.one_of(st.sampled_from(_INSIDE), st.sampled_from(_OUTSIDE), made)


_STORABLE = [("A", "192.0.2.{}"), ("AAAA", "2001:db8::{}"), ("CNAME", "t{}.example.org"), ("TXT", '"text {}"'),
             ("SRV", "10 5 443 s{}.example.org"), ("MX", "10 mail{}.example.org"), ("NS", "ns{}.example.org")]


def _storable_endpoints() -> st.SearchStrategy[dict[str, Any]]:
    """Endpoints that can be stored (a name in the zone, a target of its type), some in a view: what gets written."""
    names = st.one_of(st.sampled_from(_INSIDE),
                      st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10})?", fullmatch=True).map(lambda n: f"{n}.{ZONE}"))
    typed = st.tuples(st.sampled_from(_STORABLE), st.integers(1, 250)).map(
        lambda pair: (pair[0][0], pair[0][1].format(pair[1])))
    view = st.lists(st.fixed_dictionaries({"name": st.just("webhook/view"),
                                           "value": st.sampled_from(["east", "region-east", "west"])}), max_size=1)
    return st.builds(lambda name, type_target, ttl, props: {
        "dnsName": name, "recordType": type_target[0], "targets": [type_target[1]], "recordTTL": ttl,
        "labels": {"owner": "fuzz"}, "providerSpecific": props}, names, typed, st.integers(0, 3600), view)


def _one_defect(endpoint: dict[str, Any], defect: tuple[str, Any]) -> dict[str, Any]:
    """``endpoint`` with one field made unstorable (each reason the webhook skips an endpoint for)."""
    field, value = defect
    if field == "providerSpecific":
        return {**endpoint, field: [*endpoint[field], value]}
    if field == "labels":
        return {**endpoint, field: {**endpoint[field], **value}}
    return {**endpoint, field: value}


_DEFECTS = st.one_of(
    st.tuples(st.just("dnsName"), st.sampled_from(_OUTSIDE)),
    st.tuples(st.just("recordType"), st.sampled_from(["PTR", "NAPTR", "", "*", "TYPE65", "a\ud800"])),
    st.tuples(st.just("targets"), st.sampled_from([[], ["300.1.1.1"], ["", "192.0.2.1"], ["\ud800"], ["a", "b"]])),
    st.tuples(st.just("recordTTL"), st.sampled_from([-1, 2**31, 2**63, -(2**70)])),
    st.tuples(st.just("providerSpecific"), st.fixed_dictionaries({"name": st.just("webhook/view"),
                                                                  "value": st.sampled_from(_VIEWS)})),
    st.tuples(st.just("providerSpecific"), st.fixed_dictionaries({"name": st.just("webhook/weights"),
                                                                  "value": st.sampled_from(["x", "192.0.2.99=1",
                                                                                            "=", "1.2.3.4=-1"])})),
    st.tuples(st.just("labels"), st.just({"owner": "\ud800"})),
    st.tuples(st.just("setIdentifier"), st.just("\udfff")),
)


def _endpoints() -> st.SearchStrategy[dict[str, Any]]:
    """Endpoints as ExternalDNS would send them: storable, storable but for one field, and values at and beyond
    every edge."""
    return st.one_of(_storable_endpoints(), st.builds(_one_defect, _storable_endpoints(), _DEFECTS),
                     _edgy_endpoints())


def _edgy_endpoints() -> st.SearchStrategy[dict[str, Any]]:
    texts = st.text(max_size=20)
    prop = st.fixed_dictionaries({"name": st.sampled_from(_PROPERTIES) | texts,
                                  "value": st.sampled_from(_VIEWS) | st.just("192.0.2.1=3,192.0.2.2=1") | texts})
    return st.fixed_dictionaries(
        {"dnsName": _names(), "recordType": st.sampled_from(_TYPES)},
        optional={
            "targets": st.lists(st.sampled_from(_TARGETS) | texts, max_size=4),
            "recordTTL": st.sampled_from([0, 1, 300, 2**31 - 1, 2**31, -1, 2**63, -(2**70)]) | st.integers(),
            "setIdentifier": texts,
            "labels": st.dictionaries(st.sampled_from(["owner", "resource", "ownedRecord"]) | texts, texts,
                                      max_size=3),
            "providerSpecific": st.lists(prop, max_size=3),
        })


def _changes_documents() -> st.SearchStrategy[Sent]:
    """Changes documents (both spellings, now and then unpaired updates) and endpoint arrays."""
    endpoints = st.lists(_endpoints(), max_size=5)
    pairs = st.integers(0, 4).flatmap(lambda n: st.tuples(st.lists(_endpoints(), min_size=n, max_size=n),
                                                          st.lists(_endpoints(), min_size=n, max_size=n)))
    unpaired = st.tuples(st.lists(_endpoints(), max_size=3), st.lists(_endpoints(), max_size=3))

    def document(spelling: int, create: list, old_new: tuple[list, list], delete: list) -> dict[str, Any]:
        keys = (("create", "updateOld", "updateNew", "delete"),
                ("Create", "UpdateOld", "UpdateNew", "Delete"))[spelling]
        return {key: value for key, value in zip(keys, (create, *old_new, delete), strict=True) if value or spelling}

    changes = st.builds(document, st.integers(0, 1), endpoints, pairs | unpaired, endpoints)
    content_types = st.sampled_from([MEDIA_TYPE, "application/json", None])

    def post(path: str, data: Any, content_type: str | None) -> Sent:
        return Sent("POST", path, {"Content-Type": content_type} if content_type else {},
                    json.dumps(data).encode())

    return st.one_of(st.builds(post, st.just("/records"), changes, content_types),
                     st.builds(post, st.just("/adjustendpoints"), endpoints, content_types))


def _raw_bodies() -> st.SearchStrategy[Sent]:
    """Bodies no JSON encoder makes: bytes, truncations, deep nesting, surrogates, oversize, odd media types."""
    deep = st.sampled_from([100, 5000, 100_000]).flatmap(
        lambda n: st.sampled_from([b"[" * n + b"]" * n, b'{"create":' + b"[" * n + b"]" * n + b"}",
                                   b'{"x":' + b'{"x":' * n + b"1" + b"}" * (n + 1)]))
    valid = b'{"create":[{"dnsName":"app.example.org","recordType":"A","targets":["192.0.2.1"]}]}'
    crafted = st.sampled_from([
        b"", b" ", b"null", b"[]", b"{}", b"NaN", b'{"create": NaN}', b'{"x": Infinity}', valid[:-3], valid + b"x",
        b"\xef\xbb\xbf" + valid, valid.replace(b"app", b"\xed\xa0\x80"), valid.replace(b"app", b"\xff\xfe"),
        valid.replace(b"app", b"\\ud800"), valid.replace(b'"targets"', b'"recordTTL":60.0,"targets"'),
        valid.replace(b'"targets"', b'"recordTTL":1' + b"0" * 5000 + b',"targets"'),
        b'{"create":[],"Create":[]}', b'{"updateOld":[{}],"updateNew":[]}', b'{"create":{"dnsName":"x"}}',
        valid.replace(b'"targets"', b'"labels":{"owner":1.5},"targets"'), valid.replace(b'"192.0.2.1"', b"1e300"),
        valid.replace(b'"targets"', b'"recordTTL":1e300,"targets"'), b'[{"dnsName":2.0}]',
    ])
    # the limit and one byte over it (made on demand: a strategy's repr holds its examples)
    sized = st.sampled_from([0, 1]).map(lambda over: b'{"create":[' + b" " * (LIMIT - 13 + over) + b"]}")
    bodies = st.one_of(crafted, deep, sized, st.binary(max_size=200))
    content_types = st.sampled_from([MEDIA_TYPE, "application/json", None, "text/plain", "application/json; "
                                     "charset=utf-8", "APPLICATION/EXTERNAL.DNS.WEBHOOK+JSON; version=1",
                                     "multipart/form-data; boundary=x", "\u00e9"])

    def post(path: str, body: bytes, content_type: str | None, chunked: bool) -> Sent:
        headers = {"Content-Type": content_type} if content_type else {}
        return Sent("POST", path, headers, tuple(body[i:i + 65536] for i in range(0, len(body), 65536)) or (b"",)
                    if chunked else body)

    return st.builds(post, st.sampled_from(["/records", "/adjustendpoints"]), bodies, content_types, st.booleans())


def requests_to_send() -> st.SearchStrategy[Sent]:
    return st.one_of(_from_schemathesis(), _changes_documents(), _changes_documents(), _raw_bodies())


# ---- the webhook, its etcd and the canaries ------------------------------------------------------------------------

@dataclass
class Target:
    server: WebhookProvider
    kv: Any
    prefix: str
    canaries: dict[str, tuple[bytes, int]]

    @property
    def root(self) -> str:
        return self.prefix[:-1]


def _canary_keys(prefix: str) -> dict[str, bytes]:
    """Keys the webhook must never touch: outside its key space, and inside it for names outside the filter."""
    root = prefix[:-1]
    value = json.dumps({"host": "192.0.2.250", "ttl": 60, "targetstrip": 1}).encode()
    return {
        "/canary/outside": b"not ours",
        root: b"the root itself",
        f"{root}2/org/example/app/c0ffee": value,  # a sibling prefix, not a view
        f"{root}-Bad_View/org/example/app/c0ffee": value,  # not a view name
        f"{prefix}com/other/app/c0ffee": value,  # outside the domain filter
        f"{prefix}org/notexample/c0ffee": value,
        f"{prefix}org/example/private/app/c0ffee": value,  # in the excluded domain
        f"{prefix}org/example/private": json.dumps({"nameKey": "private.example.org"}).encode(),
        f"{root}-east/com/other/app/c0ffee": value,  # a view prefix, outside the filter
        f"{root}-east/org/example/private/c0ffee": value,
    }


def _snapshot(kv: Any) -> dict[str, tuple[bytes, int]]:
    return {meta.key.decode("utf-8", "backslashreplace"): (value, meta.mod_revision) for value, meta in kv.get_all()}


_VIEW_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _allowed(target: Target, key: str) -> bool:
    """A key the webhook may write: under its prefix or a view prefix, for a name in example.org and not in
    private.example.org (keys hold the name's labels reversed: ``org/example/app``)."""
    if key.startswith(target.prefix):
        below = key[len(target.prefix):]
    elif key.startswith(target.root + "-") and "/" in key:
        view, _, below = key[len(target.root) + 1:].partition("/")
        if not _VIEW_LABEL.fullmatch(view):
            return False
    else:
        return False
    in_zone = below == "org/example" or below.startswith("org/example/")
    excluded = below == "org/example/private" or below.startswith("org/example/private/")
    return in_zone and not excluded


def _served(name: str) -> bool:
    name = name.lower().rstrip(".")
    return (name == ZONE or name.endswith("." + ZONE)) and not (name == EXCLUDED or name.endswith("." + EXCLUDED))


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A webhook on an etcd of its own (so every key in it is either a canary or the webhook's), canaries planted."""
    workdir = tmp_path_factory.mktemp("bad-input")
    with EtcdServer(workdir / "etcd", max_txn_ops=1024) as etcd:
        prefix = f"/fz{uuid.uuid4().hex[:6]}/"
        kv = etcd_kv(etcd.url)
        for key, value in _canary_keys(prefix).items():
            kv.put(key, value)
        canaries = _snapshot(kv)
        server = WebhookProvider(etcd.endpoints, workdir, domain_filter=ZONE, prefix=prefix, name="webhook-fuzz",
                                 extra_args=[f"--exclude-domains={EXCLUDED}", f"--max-request-bytes={LIMIT}",
                                             "--log-level=error"]).start()
        try:
            yield Target(server, kv, prefix, canaries)
        finally:
            server.stop()


# ---- the test ------------------------------------------------------------------------------------------------------

def _send(session: requests.Session, target: Target, sent: Sent) -> requests.Response:
    port = target.server.health_port if sent.health_port else target.server.port
    body: Any = iter(sent.body) if isinstance(sent.body, tuple) else sent.body
    return session.request(sent.method, f"http://127.0.0.1:{port}{sent.path}", headers=sent.headers, data=body,
                           timeout=CLIENT_TIMEOUT)


def _judge(oracle: Oracle, sent: Sent, response: requests.Response) -> str | None:
    """Why this answer breaks the description (None when it keeps it)."""
    request = response.request
    if isinstance(sent.body, tuple):
        request.body = sent.content  # what was sent, for the oracle
    expected = oracle.expected(request)
    status = response.status_code
    if status != expected:
        return f"{sent.method} {sent.path} -> {status}, the description says {expected}"
    if status not in oracle.documented(sent.path, sent.method):
        return f"{sent.method} {sent.path} -> {status}: not documented"
    json_answer = status != 204 and (status != 200 or sent.path in ("/", "/records", "/adjustendpoints"))
    if json_answer and response.headers.get("Content-Type") != MEDIA_TYPE:
        return f"{sent.method} {sent.path} -> {status} as {response.headers.get('Content-Type')!r}, not {MEDIA_TYPE}"
    try:
        answer = response.json() if json_answer else None
    except ValueError:
        return f"{sent.method} {sent.path} -> {status} with a body that is not JSON"
    if status in (400, 413, 415) and not (answer or {}).get("error"):
        return f"{sent.method} {sent.path} -> {status} without an error message"
    if sent.path == "/records" and sent.method == "GET":
        outside = [e.get("dnsName") for e in answer or [] if not _served(e.get("dnsName", ""))]
        if outside:
            return f"GET /records lists names outside the domain filter: {outside[:3]}"
    return None


def test_generated_requests_to_every_operation_get_no_5xx_and_touch_nothing_outside_the_prefix_and_filter(
        target: Target, tally):
    count = times(300, 10_000)
    seen = tally("webhook API: requests generated from its OpenAPI description", BAD_INPUT)
    oracle = Oracle()
    session = requests.Session()
    broken: list[str] = []
    statuses: dict[int, int] = {}

    def send(sent: Sent) -> None:
        try:
            response = _send(session, target, sent)
        except requests.RequestException as error:
            broken.append(f"{sent.method} {sent.path}: no answer ({type(error).__name__}); process running: "
                          f"{target.server.process.running}")
            return
        seen.injection()
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code >= 500:
            seen.server_errors += 1
        problem = _judge(oracle, sent, response)
        if problem and len(broken) < 20:
            broken.append(f"{problem}: {sent!r}")

    @settings(max_examples=count, deadline=None, database=None, phases=(Phase.generate,),
              suppress_health_check=list(HealthCheck))
    @given(requests_to_send())
    def one(sent: Sent) -> None:
        send(sent)
        if seen.injected % READ_EVERY == 0:  # still answering, and GET /records lists only names in the filter
            for read in READS:
                send(read)

    one()
    after = _snapshot(target.kv)
    changed = [key for key, before in target.canaries.items() if after.get(key) != before]
    foreign = [key for key in after if key not in target.canaries and not _allowed(target, key)]
    seen.lost = len(changed) + len(foreign)
    seen.note(f"{seen.injected} requests, statuses {dict(sorted(statuses.items()))}, "
              f"{sum(1 for key in after if key not in target.canaries)} keys written")
    assert target.server.process.running and target.server.client.negotiate().status_code == 200
    assert seen.injected >= count, f"only {seen.injected} requests answered, {count} generated"
    assert seen.server_errors == 0, statuses
    assert (changed, foreign) == ([], []), "canaries changed or keys written outside the prefix or domain filter"
    assert broken == [], "\n".join(broken)
    assert statuses.get(204, 0) > 0 and statuses.get(400, 0) > 0, statuses  # both kinds of document were sent
    assert sum(1 for key in after if key not in target.canaries) > 0, "no record was ever stored: the input is too bad"
