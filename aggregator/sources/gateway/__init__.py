"""Gateway API: Gateways and their routes in members, behind GatewayDNSRecord intents."""
