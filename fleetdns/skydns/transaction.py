"""An etcd transaction as the store runs it, and what it costs on the wire against etcd's request limits.

Shared by the planner (which packs names into transactions within ``--etcd-max-txn-ops`` and
``--etcd-max-txn-bytes``) and the store (which sends them): the byte measure has one home.
"""

from __future__ import annotations

from dataclasses import dataclass

# Upper bound of the protobuf framing one key costs a TxnRequest: field tags and length prefixes of the Compare or
# RequestOp and its inner request, and the compare's mod revision (a 10-byte varint at most). Checked against
# etcd's real messages in the tests, so a byte budget computed with it is never exceeded on the wire.
KEY_FRAMING_BYTES = 32


def op_bytes(key: str, value: str | None) -> int:
    """Bytes a put (``value``) or delete (None) of ``key`` and its mod-revision compare add to a transaction."""
    size = 2 * (len(key.encode()) + KEY_FRAMING_BYTES)
    return size if value is None else size + len(value.encode())


@dataclass(frozen=True)
class Transaction:
    """Every compare must hold, then every put and delete runs; ``names`` are the DNS names it touches."""

    compares: tuple[tuple[str, int], ...]
    puts: tuple[tuple[str, str], ...]
    deletes: tuple[str, ...]
    names: tuple[str, ...]
    splits_a_name: bool = False

    @property
    def op_count(self) -> int:
        return len(self.puts) + len(self.deletes)

    @property
    def byte_count(self) -> int:
        """An upper bound of the request's size on the wire (the measure of etcd's --max-request-bytes)."""
        keys = [key for key, _ in self.compares] + [key for key, _ in self.puts] + list(self.deletes)
        return (sum(len(key.encode()) + KEY_FRAMING_BYTES for key in keys)
                + sum(len(value.encode()) for _, value in self.puts))
