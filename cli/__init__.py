"""The operator's command, ``fleetdns`` (also ``kubectl fleetdns``): join and unjoin members, status, explain.

It reads what the other components wrote (docs/design/cli.md) and recomputes no decision of theirs."""
