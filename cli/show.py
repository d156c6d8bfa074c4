"""``fleetdns status`` for people: one table per part, the rows that need attention coloured."""

from __future__ import annotations

import sys
from collections import Counter
from typing import TextIO

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
