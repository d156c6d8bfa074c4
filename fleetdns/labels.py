"""Labels and annotations FleetDNS puts on the objects it writes: what tools (and people with kubectl) select by.

Written by the aggregator (aggregator/render/records.py, aggregator/selfservice/generator.py); read back by it and by
the ``fleetdns`` command (cli/)."""

# On each DNSEndpoint the aggregator owns: the intent it publishes (kind and name; the namespace is the object's)
LABEL_INTENT_KIND = "fleetdns.io/intent-kind"
LABEL_INTENT_NAME = "fleetdns.io/intent-name"

# On each intent the generator wrote (self-service): who owns it and what decided it
LABEL_GENERATED_BY = "fleetdns.io/generated-by"  # "annotations" or "discovery": the generator owns the intent
LABEL_SOURCE_KIND = "fleetdns.io/source-kind"  # the kind of the member object that decided it (Service, HTTPRoute)
LABEL_DISCOVERY_RULE = "fleetdns.io/discovery-rule"  # the rule, for generated-by discovery
ANNOTATION_SOURCE_CLUSTERS = "fleetdns.io/source-clusters"  # comma-separated clusters whose objects claim it
