"""``fleetdns status`` for people: one table per part, the rows that need attention coloured."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any, TextIO

from cli.explain import Explanation
from cli.output import colour, table
from cli.status import Status


def print_status(found: Status, stream: TextIO = sys.stdout) -> None:
    stream.write("MEMBERS\n")
    table(["NAME", "REGION", "ZONE", "STATE", "SINCE", "REASON"],
          [(m.name, m.region, m.zone, _mark(m.state, m.ok, stream), m.since, m.reason) for m in found.members]
          or [("(none)", "", "", "", "", "")], stream)
    stream.write("\nREGIONS\n")
    table(["REGION", "PROBER", "RENEWED", "VOTING", "CHECKS DOWN", "DNS"],
          [(r.region, r.prober or "-", "-" if r.renewed_seconds_ago is None else f"{r.renewed_seconds_ago:.0f}s ago",
            _mark("yes" if r.voting else f"no: {r.why_not}", r.voting, stream), str(r.checks_down),
            _mark(r.dns, r.dns_ok, stream)) for r in found.regions] or [("(none)", "", "", "", "", "")], stream)
    counts = Counter(app.state for app in found.apps)
    stream.write(f"\nAPPS  {len(found.apps)} intents: "
                 + (", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none") + "\n")
    attention = [a for a in found.apps if not a.ok]
    if attention:
        table(["NAMESPACE", "KIND", "NAME", "STATE", "MESSAGE"],
              [(a.namespace, a.kind, a.name, _mark(a.state, False, stream), a.message) for a in attention], stream)
    verdict = "healthy" if found.ok else "needs attention (the rows marked above)"
    stream.write("\n" + colour(f"fleet {verdict}", "ok" if found.ok else "warning", stream) + "\n")


def _mark(text: str, ok: bool, stream: TextIO) -> str:
    """Colour on a terminal only (padding is computed on the plain text, so colour goes on whole cells)."""
    return text if ok else colour(text, "warning", stream)


def print_explanation(found: Explanation, stream: TextIO = sys.stdout) -> None:
    intent = found.intent
    stream.write(f"NAME    {found.name}\nINTENT  {intent['kind']} {intent['namespace']}/{intent['name']} "
                 f"({intent['origin']})\nPOLICY  {found.policy}\n\nCLUSTERS\n")
    table(["CLUSTER", "REGION", "IN ANSWER", "VERDICT", "AS EACH REGION SEES IT", "REASON"],
          [(c.get("cluster", ""), c.get("region", ""), _mark("yes" if c.get("healthy") else "no",
                                                               bool(c.get("healthy")), stream),
            (c.get("healthCheck") or {}).get("verdict", "-"), _regions_seen(c), c.get("reason", ""))
           for c in found.clusters] or [("(none)", "", "", "", "", "")], stream)
    stream.write("\nPOLICY'S ANSWER PER VIEW\n")
    table(["VIEW", "CLUSTERS", "WHY"],
          [(a.get("view") or "(default)", ", ".join(c.get("cluster", "") for c in a.get("clusters") or []) or "-",
            a.get("reason", "")) for a in found.answers] or [("(none)", "", "")], stream)
    stream.write(f"\nCLIENT  {found.view_reason}\n\nANSWERS\n")
    table(["REGION", "VIEW", "SHOULD SERVE", "SERVES", "MATCH", "NOTE"],
          [(r.region, r.view, _records(r.should), _records(r.serves) if r.server else "-",
            "" if not r.server or r.note else _mark("ok" if r.matches else "DIFFERS", r.matches, stream),
            r.problem or r.note) for r in found.regions], stream)
    if not found.ok:
        stream.write("\n" + colour("a region serves something else than it should: see DIFFERS above", "warning",
                                   stream) + "\n")


def _regions_seen(cluster: dict[str, Any]) -> str:
    regions = (cluster.get("healthCheck") or {}).get("regions") or []
    return ", ".join(f"{r.get('region')} {r.get('state')}{'' if r.get('fresh', True) else ' (stale)'}"
                     for r in regions) or "-"


def _records(records: dict[str, list[str]]) -> str:
    return " ".join(f"{rdtype} {','.join(values)}" for rdtype, values in sorted(records.items())) or "nothing"
