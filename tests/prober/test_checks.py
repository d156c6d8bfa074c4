"""One check: its wire form, and against real servers: the stand-in ingress controller (rig/ingress.py) on loopback,
and a TLS server of the test's own that records the SNI it is sent."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetdns.healthcheck import HealthCheck, HttpGet, Scheme, TcpSocket
from prober.checks import CheckError, CheckRunner, Outcome, Result, check_target
from rig.certs import CertificateAuthority
from rig.ingress import StandInIngress
from rig.ports import free_port
from rig.waiting import wait_for
from tests.support.checks import run_checks

ADDRESS = "127.0.0.84"
HOST = "web.checks.example"


@pytest.fixture(scope="module")
def ingress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandInIngress]:
    with StandInIngress("checks", tmp_path_factory.mktemp("ingress"), [ADDRESS], http_port=free_port(ADDRESS),
                        https_port=free_port(ADDRESS)) as started:
        started.control.register(HOST, "ns", "web")  # no API server: a registered app is ready
        yield started


def http(port: int, host: str = HOST, scheme: Scheme = Scheme.HTTP, path: str = "/healthz") -> HealthCheck:
    return HealthCheck(http_get=HttpGet(port, path, scheme, host))


def test_http_200_is_up_and_500_is_down_with_its_status_while_the_app_stays_registered(ingress: StandInIngress):
    [up] = run_checks((http(ingress.http_port), 1.0), address=ADDRESS)
    assert (up.result, up.message) == (Result.UP, "HTTP 200")
    ingress.control.set_answer(HOST, 500)
    try:
        [down] = run_checks((http(ingress.http_port), 1.0), address=ADDRESS)
    finally:
        ingress.control.set_answer(HOST, None)
    assert (down.result, down.message) == (Result.HTTP_ERROR, "HTTP 500")


def test_the_host_header_routes_the_check_to_its_own_app(ingress: StandInIngress):
    [unknown] = run_checks((http(ingress.http_port, host="other.checks.example"), 1.0), address=ADDRESS)
    assert unknown.message == "HTTP 404"


def test_an_app_that_answers_later_than_the_timeout_is_a_response_timeout(ingress: StandInIngress):
    ingress.control.set_answer(HOST, 200, delay=3.0)
    try:
        started = time.monotonic()
        [late] = run_checks((http(ingress.http_port), 0.5), address=ADDRESS)
        took = time.monotonic() - started
    finally:
        ingress.control.set_answer(HOST, None)
    assert (late.result, late.message) == (Result.TIMEOUT, "response timeout after 0.5s")
    assert late.connected is not None and took < 2.5  # it gave up at its timeout, not when the app answered


def test_a_closed_port_is_refused_and_an_unreachable_address_times_out_in_connect():
    closed = free_port(ADDRESS)
    [refused] = run_checks((HealthCheck(tcp_socket=TcpSocket(closed)), 1.0), address=ADDRESS)
    assert (refused.result, refused.message) == (Result.REFUSED, "connection refused")
    # a listener that never accepts, with its backlog full: the SYN is dropped, the connect hangs
    with socket.socket() as full:
        full.bind((ADDRESS, 0))
        full.listen(0)
        fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(full.getsockname())
            fillers.append(filler)
        try:
            [hung] = run_checks((HealthCheck(tcp_socket=TcpSocket(full.getsockname()[1])), 0.5), address=ADDRESS)
        finally:
            for filler in fillers:
                filler.close()
    assert (hung.result, hung.message) == (Result.TIMEOUT, "connect timeout after 0.5s")


def test_tcp_check_is_up_while_the_port_accepts_and_down_once_it_is_closed(ingress: StandInIngress):
    port = free_port(ADDRESS)
    ingress.control.open_port(port)
    [up] = run_checks((HealthCheck(tcp_socket=TcpSocket(port)), 1.0), address=ADDRESS)
    # the handshake completes in the kernel before the stand-in's accept loop counts it: wait for the count
    wait_for(lambda: ingress.control.stats().accepted.get(port) == 1, 5, f"the stand-in to count the check on {port}")
    ingress.control.close_port(port)
    [down] = run_checks((HealthCheck(tcp_socket=TcpSocket(port)), 1.0), address=ADDRESS)
    assert up.result is Result.UP and down.result is Result.REFUSED


def test_every_check_opens_its_own_connection(ingress: StandInIngress):
    ingress.control.reset_stats()
    outcomes = run_checks(*[(http(ingress.http_port), 1.0) for _ in range(5)], address=ADDRESS)
    outcomes += run_checks(*[(http(ingress.https_port, scheme=Scheme.HTTPS), 1.0) for _ in range(5)], address=ADDRESS)
    assert all(o.up for o in outcomes)
    stats = ingress.control.stats().host(HOST)
    assert (stats.connections, stats.requests) == (10, 10)


def test_https_is_routed_by_host_without_verifying_the_certificate(ingress: StandInIngress):
    [up] = run_checks((http(ingress.https_port, scheme=Scheme.HTTPS), 1.0), address=ADDRESS)
    assert up.message == "HTTP 200"  # the stand-in's CA is nowhere in the prober's trust store
    ingress.control.set_answer(HOST, 503)
    try:
        [down] = run_checks((http(ingress.https_port, scheme=Scheme.HTTPS), 1.0), address=ADDRESS)
    finally:
        ingress.control.set_answer(HOST, None)
    assert down.message == "HTTP 503"


class SniRecorder:
    """A TLS server that records the SNI of each handshake and answers 200 on a fresh connection each time."""

    def __init__(self, directory: Path) -> None:
        crt, key = CertificateAuthority.create("sni-test-ca").issue("sni", directory, "sni",
                                                                   dns_names=("a.sni.example",), server=True)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(crt, key)
        self.context.sni_callback = lambda _obj, name, _ctx: self.names.append(name)  # type: ignore[assignment]
        self.names: list[str | None] = []
        self.sock = socket.create_server((ADDRESS, 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(4096)
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except (OSError, ssl.SSLError):
                continue

    def close(self) -> None:
        self.sock.close()


def test_https_sends_the_host_as_sni(tmp_path: Path):
    server = SniRecorder(tmp_path)
    try:
        outcomes = [run_checks((http(server.port, host="a.sni.example", scheme=Scheme.HTTPS), 2.0), address=ADDRESS)[0]
                    for _ in range(3)]
    finally:
        server.close()
    assert [o.message for o in outcomes] == ["HTTP 200"] * 3
    assert server.names == ["a.sni.example"] * 3


def test_a_runner_resumes_the_tls_session_of_its_previous_check_of_the_same_target(tmp_path: Path):
    server = SniRecorder(tmp_path)
    runner = CheckRunner()
    target = check_target(ADDRESS, http(server.port, host="a.sni.example", scheme=Scheme.HTTPS))
    outcomes: list[Outcome] = []
    try:
        for _ in range(3):
            runner.start(target, 2.0, outcomes.append)
            deadline = time.monotonic() + 10
            while runner.in_flight and time.monotonic() < deadline:
                runner.poll(0.05)
            runner.poll(0)
    finally:
        runner.close()
        server.close()
    assert [o.tls_resumed for o in outcomes] == [False, True, True]
    assert server.names == ["a.sni.example"] * 3  # every check is its own TCP connection and handshake


def test_ipv6_addresses_are_checked_over_ipv6(tmp_path: Path):
    with socket.socket(socket.AF_INET6) as one, socket.socket(socket.AF_INET6) as two:  # two ports free on ::1
        one.bind(("::1", 0))
        two.bind(("::1", 0))
        http_port, https_port = one.getsockname()[1], two.getsockname()[1]
    with StandInIngress("checks6", tmp_path, ["::1"], http_port=http_port, https_port=https_port) as ingress:
        ingress.control.register(HOST, "ns", "web")
        [up] = run_checks((http(http_port), 1.0), address="::1")
        assert up.message == "HTTP 200"
        assert list(ingress.control.stats().host(HOST).clients) == ["::1"]


# --- the wire form of a check ------------------------------------------------------------------------

@pytest.mark.unit
def test_the_request_is_one_get_with_host_headers_and_connection_close():
    check = HealthCheck(http_get=HttpGet(8443, "/ready z?x=1", Scheme.HTTPS, "web.example.com",
                                         (("X-Probe", "fleetdns"), ("Connection", "keep-alive"))))
    target = check_target("198.18.1.1", check)
    lines = target.request.decode().split("\r\n")
    assert lines[0] == "GET /ready%20z?x=1 HTTP/1.1"
    assert "Host: web.example.com" in lines and "X-Probe: fleetdns" in lines
    assert "Connection: close" in lines and "Connection: keep-alive" not in lines
    assert target.request.endswith(b"\r\n\r\n") and target.sni == "web.example.com"
    assert check_target("198.18.1.1", HealthCheck(http_get=HttpGet(80, host="web.example.com"))).sni is None
    assert check_target("2001:db8::1", HealthCheck(tcp_socket=TcpSocket(443))).request == b""
    with pytest.raises(CheckError, match="not an IP"):
        check_target("lb.example.com", HealthCheck(tcp_socket=TcpSocket(443)))
