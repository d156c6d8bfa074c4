"""Pure planning: what is in etcd now + ExternalDNS's Changes → per-name puts and deletes → transactions.

No I/O here; the store executes the transactions. Rules that keep CoreDNS's answers safe:
- only records named in the Changes are touched (exact keys, never a prefix delete);
- all keys of one name go into one transaction, so a name is never served half-updated;
- each transaction compares the mod revision of every key it writes, so a concurrent writer is noticed.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from webhook_provider.changes import Changes
from webhook_provider.records import Record, StoredEntry, records_of
from webhook_provider.skydns import encode_value, key_for, prefix_for

log = logging.getLogger(__name__)

Identity = tuple[str, str, str]


@dataclass
class NamePlan:
    """Every etcd operation for one DNS name; ``expected`` holds the mod revision each key must still have."""

    name: str
    puts: dict[str, str] = field(default_factory=dict)
    deletes: dict[str, None] = field(default_factory=dict)  # ordered set
    expected: dict[str, int] = field(default_factory=dict)

    @property
    def op_count(self) -> int:
        return len(self.puts) + len(self.deletes)


@dataclass(frozen=True)
class Transaction:
    compares: tuple[tuple[str, int], ...]
    puts: tuple[tuple[str, str], ...]
    deletes: tuple[str, ...]
    names: tuple[str, ...]
    splits_a_name: bool = False

    @property
    def op_count(self) -> int:
        return len(self.puts) + len(self.deletes)


def plan_changes(entries: list[StoredEntry], changes: Changes, prefix: str) -> list[NamePlan]:
    """One NamePlan per name the Changes touch, leaving out names that need no write."""
    removed: dict[str, set[Identity]] = defaultdict(set)
    added: dict[str, dict[Identity, Record]] = defaultdict(dict)
    for endpoint in (*changes.delete, *changes.update_old):
        for record in records_of(endpoint):
            removed[record.name].add(record.identity)
    for endpoint in (*changes.create, *changes.update_new):
        for record in records_of(endpoint):
            added[record.name][record.identity] = record
    touched = set(removed) | set(added)
    current: dict[str, list[StoredEntry]] = defaultdict(list)
    for entry in entries:
        if entry.name in touched:
            current[entry.name].append(entry)
    plans = [_plan_name(name, current[name], removed[name], added[name], prefix) for name in sorted(touched)]
    return [plan for plan in plans if plan.op_count]


def _plan_name(name: str, entries: list[StoredEntry], removed: set[Identity], added: dict[Identity, Record],
               prefix: str) -> NamePlan:
    plan = NamePlan(name)
    placed: set[Identity] = set()
    pending: list[Record] = []
    values = {entry.key: entry.value for entry in entries}
    for entry in sorted(entries, key=lambda e: e.key):
        kept, changed = _apply_to_entry(entry, removed, added, placed)
        if changed:
            # Rewritten records go to their own deterministic key: a key written by someone else may lack
            # the leaf label, or hold host and text together. For our own keys the
            # delete is dropped again below.
            plan.deletes[entry.key] = None
            pending.extend(kept)
    pending.extend(record for identity, record in added.items() if identity not in placed)
    revisions = {entry.key: entry.mod_revision for entry in entries}
    for record in pending:
        key = key_for(record, prefix_for(record, prefix))
        value = encode_value(record)
        plan.deletes.pop(key, None)  # etcd refuses a transaction that puts and deletes one key
        if values.get(key) == value.encode():
            continue  # already there, byte for byte
        plan.puts[key] = value
    plan.expected = {key: revisions.get(key, 0) for key in (*plan.puts, *plan.deletes)}
    return plan


def _apply_to_entry(entry: StoredEntry, removed: set[Identity], added: dict[Identity, Record],
                    placed: set[Identity]) -> tuple[list[Record], bool]:
    """Records this key keeps after the change, and whether anything about it changed."""
    kept: list[Record] = []
    changed = False
    for record in entry.records:
        identity = record.identity
        if identity in added:
            if identity in placed:
                changed = True  # a duplicate of a record already kept elsewhere at this name
                continue
            placed.add(identity)
            kept.append(added[identity])
            changed = True
        elif identity in removed:
            changed = True
        else:
            kept.append(record)
    return kept, changed


def batch(plans: list[NamePlan], max_ops: int) -> list[Transaction]:
    """Pack whole names into transactions of at most ``max_ops`` operations (and as many compares)."""
    transactions: list[Transaction] = []
    group: list[NamePlan] = []
    size = 0
    for plan in plans:
        if plan.op_count > max_ops:
            transactions.extend(_flush(group))
            group, size = [], 0
            transactions.extend(_split_name(plan, max_ops))
            continue
        if size + plan.op_count > max_ops:
            transactions.extend(_flush(group))
            group, size = [], 0
        group.append(plan)
        size += plan.op_count
    transactions.extend(_flush(group))
    return transactions


def _flush(group: list[NamePlan]) -> list[Transaction]:
    if not group:
        return []
    return [Transaction(
        compares=tuple((key, rev) for plan in group for key, rev in plan.expected.items()),
        puts=tuple(item for plan in group for item in plan.puts.items()),
        deletes=tuple(key for plan in group for key in plan.deletes),
        names=tuple(plan.name for plan in group),
    )]


def _split_name(plan: NamePlan, max_ops: int) -> list[Transaction]:
    """A name too big for one transaction: puts first, deletes last, so the name is never empty."""
    log.warning("name needs more operations than one etcd transaction allows; writing it in parts",
                extra={"dnsName": plan.name, "operations": plan.op_count, "max_txn_ops": max_ops})
    ops: list[tuple[str, str | None]] = [*plan.puts.items(), *((key, None) for key in plan.deletes)]
    parts = []
    for start in range(0, len(ops), max_ops):
        chunk = ops[start:start + max_ops]
        parts.append(Transaction(
            compares=tuple((key, plan.expected[key]) for key, _ in chunk),
            puts=tuple((key, value) for key, value in chunk if value is not None),
            deletes=tuple(key for key, value in chunk if value is None),
            names=(plan.name,),
            splits_a_name=True,
        ))
    return parts
