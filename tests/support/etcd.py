"""etcd read and written directly, behind the webhook's back (as another writer, or to check what it stored)."""

from __future__ import annotations

import pyetcd


def etcd_kv(url: str) -> pyetcd.Etcd3Client:
    """A client of the etcd at ``url`` (http://host:port)."""
    host, port = url.removeprefix("http://").split(":")
    return pyetcd.client(host=host, port=int(port))
