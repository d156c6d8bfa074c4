"""Free loopback ports for rig components."""

from __future__ import annotations

import socket

_HANDED_OUT: set[int] = set()


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
