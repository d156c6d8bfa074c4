"""KubeFed's record names for a ServiceDNSRecord, built and checked with fleetdns.dnsname.check_publishable
(servable by stock CoreDNS, with room for ExternalDNS's TXT registry prefix).

With P = ``<externalName or service>.<namespace>.<domainRef>.svc``: the global name is ``P.<domain>``,
a region's ``P.<region>.<domain>``, a zone's ``P.<zone>.<region>.<domain>``; ``dnsPrefix`` adds
``<dnsPrefix>.<domain>``. Ingress hosts are used as given (normalised). The CRDs refuse what can be
judged at admission; a name that is too long only with its Domain is refused here (Ready=False, InvalidName).
"""

from __future__ import annotations

from dataclasses import dataclass

from aggregator.model import ServiceIntent
from fleetdns.dnsname import check_publishable, join, normalize_name


@dataclass(frozen=True)
class ServiceNames:
    """The names of one ServiceDNSRecord under one domain."""

    prefix: str
    domain: str

    @property
    def global_name(self) -> str:
        return check_publishable(join(self.prefix, self.domain))

    def region_name(self, region: str) -> str:
        return check_publishable(join(self.prefix, region, self.domain))

    def zone_name(self, region: str, zone: str) -> str:
        return check_publishable(join(self.prefix, zone, region, self.domain))

    def dns_prefix_name(self, dns_prefix: str) -> str:
        return check_publishable(join(dns_prefix, self.domain))


def service_names(intent: ServiceIntent, domain: str) -> ServiceNames:
    """Raises InvalidDNSNameError when the parts do not make a servable name (too long, bad label)."""
    base = intent.external_name or intent.name
    prefix = join(base, intent.namespace, intent.domain_ref, "svc")
    names = ServiceNames(prefix, normalize_name(domain))
    check_publishable(names.global_name)
    if intent.dns_prefix:
        names.dns_prefix_name(intent.dns_prefix)
    return names


def ingress_host_names(hosts: tuple[str, ...]) -> tuple[str, ...]:
    """Normalised, de-duplicated, sorted; raises InvalidDNSNameError for a host that cannot be published."""
    return tuple(sorted({check_publishable(host) for host in hosts}))
