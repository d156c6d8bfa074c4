"""Pure planning: what is in etcd now + ExternalDNS's Changes → per-name puts and deletes → transactions.

No I/O here; the store executes the transactions. Rules that keep CoreDNS's answers safe:
- only records named in the Changes are touched (exact keys, never a prefix delete);
- all keys of one name go into one transaction, so a name is never served half-updated;
- each name touched gets its name key (fleetdns/skydns/encoding.py) in step in that same transaction, under every
  prefix (default or view) where it has records: written first, deleted last, never over a key someone else put
  exactly there;
- each transaction compares the mod revision of every key it writes, so a concurrent writer is noticed;
- a transaction stays within both of etcd's request limits, operations (--max-txn-ops) and bytes (--max-request-bytes):
  a record that could never fit is refused before planning (``too_large``), never sent to be refused forever.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from fleetdns.endpoint import Endpoint
from fleetdns.skydns.encoding import encode_name_key, encode_value, key_for, name_key, prefix_for
from fleetdns.skydns.records import Record, StoredEntry, records_of
from fleetdns.skydns.transaction import Transaction, op_bytes
from webhook_provider.changes import Changes
from webhook_provider.validation import Rejection, RejectReason

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

    @property
    def byte_count(self) -> int:
        return sum(op_bytes(key, value) for key, value in self.puts.items()) + sum(
            op_bytes(key, None) for key in self.deletes)


def too_large(endpoint: Endpoint, prefix: str, max_bytes: int) -> Rejection | None:
    """Why a canonical endpoint can never be written: one of its records alone (its key, value and compare) is
    more than ``max_bytes``, so no transaction could carry it and etcd would refuse the batch on every retry."""
    if _surely_fits(endpoint, prefix, max_bytes):
        return None  # /adjustendpoints asks for every endpoint every loop: encoding each costs ~20 µs (measured)
    for record in records_of(endpoint):
        size = op_bytes(key_for(record, prefix_for(record, prefix)), encode_value(record))
        if size > max_bytes:
            return Rejection(endpoint.dns_name, endpoint.record_type, RejectReason.TOO_LARGE,
                             f"a {endpoint.record_type} record of {len(record.target.encode())} bytes takes "
                             f"{size} bytes in an etcd transaction, more than the {max_bytes} one may carry "
                             "(--etcd-max-txn-bytes, below etcd's --max-request-bytes): shorten it, or raise both")
    return None


def _surely_fits(endpoint: Endpoint, prefix: str, max_bytes: int) -> bool:
    """A cheap upper bound of ``too_large``'s measure: JSON writes a character in at most 6 bytes (``\\u001f``), a
    key character in UTF-8 takes at most 4 (twice: put and compare), each label or property adds its quotes and
    field names (under 32 bytes), and the rest (fields, numbers, leaf, view, framing) stays under 1 KiB."""
    text = (len(endpoint.dns_name) + len(endpoint.set_identifier) + max(map(len, endpoint.targets), default=0)
            + sum(len(key) + len(value) for key, value in endpoint.labels.items())
            + sum(len(prop.name) + len(prop.value) for prop in endpoint.provider_specific))
    items = len(endpoint.labels) + len(endpoint.provider_specific)
    return 8 * (len(prefix) + len(endpoint.dns_name)) + 6 * text + 32 * items + 1024 <= max_bytes


def plan_changes(entries: list[StoredEntry], changes: Changes, prefix: str) -> list[NamePlan]:
    """One NamePlan per name the Changes touch, leaving out names that need no write.

    ``prefix`` is the default prefix; a record goes under its view's prefix (``skydns.prefix_for``), and each
    prefix where a name has records gets that name's name key. A name's keys in every view share one plan.
    """
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
    # Where a name may need its name key: every prefix it has keys under now, and every prefix it is written to.
    prefixes = {name: {prefix, *(entry.prefix for entry in current[name] if entry.prefix),
                       *(prefix_for(record, prefix) for record in added[name].values())} for name in touched}
    exact_keys = {name_key(where, name): (where, name) for name in touched for where in prefixes[name]}
    at_name: dict[tuple[str, str], StoredEntry] = {}  # whatever sits exactly at a touched name, ours or not
    for entry in entries:
        if entry.key in exact_keys:
            at_name[exact_keys[entry.key]] = entry
    plans = [_plan_name(name, current[name], {where: at_name.get((where, name)) for where in prefixes[name]},
                        removed[name], added[name], prefix)
             for name in sorted(touched)]
    return [plan for plan in plans if plan.op_count]


def plan_name_keys(entries: list[StoredEntry], prefix: str, serves: Callable[[str], bool]) -> list[NamePlan]:
    """The repair pass: name keys missing (names written before them, or by the coredns provider), stale or
    left without records, for the names ``serves`` accepts, under the default prefix and every view prefix."""
    records: dict[tuple[str, str], list[Record]] = defaultdict(list)  # (prefix, name) -> records
    for entry in entries:
        for record in entry.records:
            records[(entry.prefix, record.name)].append(record)
    pairs = {(entry.prefix, entry.name_key_of) for entry in entries if entry.name_key_of} | set(records)
    pairs = {(where, name) for where, name in pairs if serves(name)}
    exact_keys = {name_key(where, name): (where, name) for where, name in pairs}
    at_name = {exact_keys[entry.key]: entry for entry in entries if entry.key in exact_keys}
    plans = []
    for where, name in sorted(pairs, key=lambda pair: (pair[1], pair[0])):
        plan = NamePlan(name)
        at = at_name.get((where, name))
        _keep_name_key(plan, name, at, records.get((where, name), []), where)
        plan.expected = {key: at.mod_revision if at else 0 for key in (*plan.puts, *plan.deletes)}
        if plan.op_count:
            plans.append(plan)
    return plans


def _plan_name(name: str, entries: list[StoredEntry], at_name: dict[str, StoredEntry | None], removed: set[Identity],
               added: dict[Identity, Record], prefix: str) -> NamePlan:
    plan = NamePlan(name)
    placed: set[Identity] = set()
    pending: list[Record] = []
    after: dict[str, list[Record]] = defaultdict(list)  # prefix -> the name's records there after the change
    values = {entry.key: entry.value for entry in entries}
    for entry in sorted(entries, key=lambda e: e.key):
        kept, changed = _apply_to_entry(entry, removed, added, placed)
        if changed:
            # Rewritten records go to their own deterministic key: a key written by someone else may lack
            # the leaf label, or hold host and text together. For our own keys the
            # delete is dropped again below.
            plan.deletes[entry.key] = None
            pending.extend(kept)
        else:
            after[entry.prefix].extend(entry.records)
    pending.extend(record for identity, record in added.items() if identity not in placed)
    revisions = {entry.key: entry.mod_revision for entry in entries}
    for record in pending:
        where = prefix_for(record, prefix)
        after[where].append(record)
        key = key_for(record, where)
        value = encode_value(record)
        plan.deletes.pop(key, None)  # etcd refuses a transaction that puts and deletes one key
        if values.get(key) == value.encode():
            continue  # already there, byte for byte
        plan.puts[key] = value
    for where in sorted(at_name.keys() | after.keys()):
        _keep_name_key(plan, name, at_name.get(where), after.get(where, []), where)
    plan.expected = {key: revisions.get(key, 0) for key in (*plan.puts, *plan.deletes)}
    return plan


def _keep_name_key(plan: NamePlan, name: str, at_name: StoredEntry | None, records: list[Record],
                   prefix: str) -> None:
    """Add the name key's put (first) or delete (last) under ``prefix`` to ``plan``, for the records the name holds
    there after it."""
    key = name_key(prefix, name)
    ours = at_name is not None and at_name.name_key_of == name
    if at_name is not None and not ours and key not in plan.deletes:
        return  # someone else's key sits exactly at the name: it answers exact lookups itself; never touched
    wanted = encode_name_key(name, records)
    if wanted is None:
        if ours:
            plan.deletes[key] = None
        return
    if ours and at_name is not None and at_name.value == wanted.encode():
        return
    plan.deletes.pop(key, None)  # a foreign record moving off the exact key: the name key replaces it
    plan.puts = {key: wanted, **plan.puts}  # first, so a name split over transactions never lacks it


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


def batch(plans: list[NamePlan], max_ops: int, max_bytes: int) -> list[Transaction]:
    """Pack whole names into transactions of at most ``max_ops`` operations (and as many compares) and at most
    ``max_bytes`` bytes (``Transaction.byte_count``); a name that fits in neither alone is split (``_split_name``)."""
    transactions: list[Transaction] = []
    group: list[NamePlan] = []
    ops = size = 0
    for plan in plans:
        plan_ops, plan_bytes = plan.op_count, plan.byte_count
        if plan_ops > max_ops or plan_bytes > max_bytes:
            transactions.extend(_flush(group))
            group, ops, size = [], 0, 0
            transactions.extend(_split_name(plan, max_ops, max_bytes))
            continue
        if ops + plan_ops > max_ops or size + plan_bytes > max_bytes:
            transactions.extend(_flush(group))
            group, ops, size = [], 0, 0
        group.append(plan)
        ops += plan_ops
        size += plan_bytes
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


def _split_name(plan: NamePlan, max_ops: int, max_bytes: int) -> list[Transaction]:
    """A name too big for one transaction (operations or bytes): puts first, deletes last, so the name is never
    empty; between the parts the name is served with some new records beside some old ones.

    Each part is filled in order up to both limits. A single operation over ``max_bytes`` gets a part of its own
    (etcd refuses it, 503): ``too_large`` keeps every record we are asked to write below that.
    """
    log.warning("name needs more than one etcd transaction allows; writing it in parts", extra={
        "dnsName": plan.name, "operations": plan.op_count, "bytes": plan.byte_count, "max_txn_ops": max_ops,
        "max_txn_bytes": max_bytes})
    ops: list[tuple[str, str | None]] = [*plan.puts.items(), *((key, None) for key in plan.deletes)]
    chunks: list[list[tuple[str, str | None]]] = []
    size = 0
    for key, value in ops:
        cost = op_bytes(key, value)
        if not chunks or len(chunks[-1]) >= max_ops or size + cost > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append((key, value))
        size += cost
    return [Transaction(
        compares=tuple((key, plan.expected[key]) for key, _ in chunk),
        puts=tuple((key, value) for key, value in chunk if value is not None),
        deletes=tuple(key for key, value in chunk if value is None),
        names=(plan.name,),
        splits_a_name=True,
    ) for chunk in chunks]
