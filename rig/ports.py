"""Free loopback ports for rig components."""

from __future__ import annotations

import random
import socket

_HANDED_OUT: set[int] = set()
_ADDRESSES_HANDED_OUT: set[str] = set()
DNS_PORT = 53


def free_loopback_address(port: int = DNS_PORT) -> str:
    """An address in 127.53.0.0/16 whose ``port`` is free for TCP and UDP (53: a nameserver as glue names it, no port
    of its own), never handed out twice by this process; random, so that parallel test workers do not collide."""
    while True:
        address = f"127.53.{random.randrange(256)}.{random.randrange(1, 255)}"
        if address in _ADDRESSES_HANDED_OUT:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, \
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                tcp.bind((address, port))
                udp.bind((address, port))
        except OSError:
            continue
        _ADDRESSES_HANDED_OUT.add(address)
        return address


def free_port(host: str = "127.0.0.1", udp_too: bool = False) -> int:
    """A port free on ``host`` (TCP, and UDP when asked), never handed out twice by this process."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            if port in _HANDED_OUT:
                continue
            if udp_too:
                try:
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                        udp.bind((host, port))
                except OSError:
                    continue
        _HANDED_OUT.add(port)
        return port


def tcp_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0
