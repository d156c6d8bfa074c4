"""``fleetdns``: the operator's command (docs/design/cli.md). Exit codes: 0 done, 1 refused or failed (what is left
is printed), 2 bad usage or configuration, 3 not found, 4 needs attention (status: a member, region or app is not
healthy; explain: a region answers differently from what it should)."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import sys
from collections.abc import Callable, Iterator, Sequence

from cli import output
from cli.contexts import UsageError, load
from cli.dnsquery import parse_server
from cli.explain import NotFound, explain
from cli.facts import DEFAULT_LEASE_NAMESPACE, read_host
from cli.join import DEFAULT_TOKEN_HOURS, Action, Joiner, JoinRefused, JoinRequest, parse_location
from cli.reader import DEFAULT_NAMESPACE
from cli.show import print_explanation, print_status
from cli.status import status
from fleetdns.kubeapi import KubeError

OK, FAILED, USAGE, NOT_FOUND, ATTENTION = 0, 1, 2, 3, 4  # ATTENTION: status found a problem, explain a mismatch


def _hours(value: str) -> int:
    """``--token-duration``: ``8760h``, ``365d`` or a number of hours."""
    units = {"h": 1, "d": 24}
    number, unit = (value[:-1], value[-1]) if value and value[-1] in units else (value, "h")
    try:
        return int(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: give hours or days, for example 8760h or 365d") from None


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="fleetdns", description="Operate a FleetDNS fleet: join members, see its "
                                  "status, explain an answer.")
    _common_flags(top, default=True)
    common = argparse.ArgumentParser(add_help=False)  # the same flags after the command, as kubectl takes them
    _common_flags(common, default=False)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    join = commands.add_parser("join", parents=[common], help="make a member cluster readable by the host's aggregator")
    _member_flags(join)
    join.add_argument("--region", required=True, help="the member's region (a DNS label, as the regions are named)")
    join.add_argument("--zone", default="", help="the member's zone (a DNS label; default: REGION-1a)")
    join.add_argument("--location", type=str, default="", metavar="LAT,LON",
                      help="where the member is, for GeoProximity (degrees, e.g. 50.11,8.68)")
    join.add_argument("--member-server", default="", metavar="URL",
                      help="the member's API URL as the host reaches it (default: the member context's)")
    join.add_argument("--token-duration", type=_hours, default=DEFAULT_TOKEN_HOURS, metavar="DURATION",
                      help="lifetime of the reader's token (default 8760h); join again to renew")

    unjoin = commands.add_parser("unjoin", parents=[common], help="delete exactly what join made, in both clusters")
    _member_flags(unjoin)

    status = commands.add_parser("status", parents=[common], help="members, regions and apps, and what needs "
                                 "attention (exit code 4 when something does)")
    _host_flags(status)

    explain = commands.add_parser("explain", parents=[common], help="why a client gets the addresses it gets, and "
                                  "what each region serves now (exit code 4 when a region differs, 3 no such name)")
    explain.add_argument("name", metavar="NAME", help="the global name, e.g. app.gslb.example.com")
    explain.add_argument("--client", default="", metavar="IP", help="the client's address (default: none; each "
                         "region answers from its region view)")
    explain.add_argument("--region", action="append", default=[], metavar="R",
                         help="only this region (repeat for more; default: every region that knows the app)")
    _host_flags(explain, leases=False)
    return top


def _host_flags(command: argparse.ArgumentParser, leases: bool = True) -> None:
    command.add_argument("--host-context", default="", metavar="HOST",
                         help="the host's kubeconfig context (default: the current context)")
    if leases:
        command.add_argument("--lease-namespace", default=DEFAULT_LEASE_NAMESPACE,
                             help=f"where the probers hold their Leases (default {DEFAULT_LEASE_NAMESPACE})")
    command.add_argument("--dns", action="append", default=[], metavar="REGION=ADDRESS[:PORT]",
                         help="ask this region's CoreDNS live (repeat for each region)")


def _common_flags(command: argparse.ArgumentParser, default: bool) -> None:
    """``--kubeconfig`` and ``-o``, before or after the command (after it, they are set only when given)."""
    command.add_argument("--kubeconfig", default="" if default else argparse.SUPPRESS,
                         help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    command.add_argument("-o", "--output", choices=output.FORMATS, default="table" if default else argparse.SUPPRESS,
                         help="table for people (default), json or yaml for scripts")


def _member_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("member_context", metavar="MEMBER-CONTEXT", help="the member's kubeconfig context")
    command.add_argument("--host-context", required=True, metavar="HOST", help="the host's kubeconfig context")
    command.add_argument("--name", default="", help="the MemberCluster's name (default: the member context's)")
    command.add_argument("--namespace", default=DEFAULT_NAMESPACE,
                         help=f"the reader's namespace in the member (default {DEFAULT_NAMESPACE})")
    command.add_argument("--host-namespace", default=DEFAULT_NAMESPACE,
                         help=f"the namespace of the member's kubeconfig Secret on the host, the aggregator's "
                              f"(default {DEFAULT_NAMESPACE})")


def _joiner(args: argparse.Namespace, for_join: bool) -> Joiner:
    member, host = load(args.member_context, args.kubeconfig), load(args.host_context, args.kubeconfig)
    name = args.name or args.member_context
    region = args.region if for_join else ""
    request = JoinRequest(
        name=name, region=region, zone=(args.zone or f"{region}-1a") if for_join else "",
        location=parse_location(args.location) if for_join and args.location else None,
        namespace=args.namespace, host_namespace=args.host_namespace, member_server=getattr(args, "member_server", ""),
        token_hours=getattr(args, "token_duration", DEFAULT_TOKEN_HOURS))
    request.validate(joining=for_join)
    return Joiner(member, host, request)


def _print_actions(actions: list[Action], fmt: str, summary: str) -> None:
    if fmt != "table":
        output.document({"actions": [a.as_dict() for a in actions], "summary": summary}, fmt)
        return
    output.table(["CLUSTER", "ACTION", "KIND", "NAME", "DETAIL"],
                 [(a.cluster, a.verb, a.kind, f"{a.namespace}/{a.name}" if a.namespace else a.name, a.detail)
                  for a in actions], colour_column=1)
    print(summary)


def run_join(args: argparse.Namespace) -> int:
    joiner = _joiner(args, for_join=True)
    name = joiner.request.name
    with _partial(joiner, args.output, f"{name}: join stopped part way; run it again once the cause is fixed"):
        actions = joiner.join()
    _print_actions(actions, args.output,
                   f"{name} joined: the aggregator marks it Connected once it reads it (`fleetdns status`, or "
                   f"`kubectl get membercluster {name}` on the host)")
    return OK


def run_unjoin(args: argparse.Namespace) -> int:
    joiner = _joiner(args, for_join=False)
    name = joiner.request.name
    with _partial(joiner, args.output, f"{name}: unjoin stopped part way; what is not listed as deleted is still "
                                       f"there; run it again once the cause is fixed"):
        actions = joiner.unjoin()
    _print_actions(actions, args.output, f"{name} unjoined: what join made is deleted; anything listed as left "
                                         f"was not join's")
    return OK


@contextlib.contextmanager
def _partial(joiner: Joiner, fmt: str, summary: str) -> Iterator[None]:
    """On an API failure part way, print what was done before it (then the error, from ``main``)."""
    try:
        yield
    except KubeError:
        if joiner.actions:
            _print_actions(joiner.actions, fmt, summary)
        raise


def run_status(args: argparse.Namespace) -> int:
    servers = {server.region: server for server in map(parse_server, args.dns)}
    host = load(args.host_context, args.kubeconfig)
    found = status(read_host(host.client, args.lease_namespace), servers)
    if args.output != "table":
        output.document(found.to_json(), args.output)
    else:
        print_status(found)
    return OK if found.ok else ATTENTION


def run_explain(args: argparse.Namespace) -> int:
    servers = {server.region: server for server in map(parse_server, args.dns)}
    if args.client:
        try:
            ipaddress.ip_address(args.client)
        except ValueError:
            raise UsageError(f"--client {args.client!r}: not an IP address") from None
    host = load(args.host_context, args.kubeconfig)
    found = explain(host.client, args.name, args.client, args.region, servers)
    if args.output != "table":
        output.document(found.to_json(), args.output)
    else:
        print_explanation(found)
    return OK if found.ok else ATTENTION


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"join": run_join, "unjoin": run_unjoin,
                                                            "status": run_status, "explain": run_explain}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as error:
        print(f"fleetdns {args.command}: {error}", file=sys.stderr)
        return USAGE
    except NotFound as error:
        print(f"fleetdns {args.command}: {error}", file=sys.stderr)
        return NOT_FOUND
    except JoinRefused as error:
        print(f"fleetdns {args.command}: refused, {error}", file=sys.stderr)
        return FAILED
    except KubeError as error:
        what = "an API server did not answer" if error.status == 0 else "an API server refused"
        print(f"fleetdns {args.command}: {what}: {error}", file=sys.stderr)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())
