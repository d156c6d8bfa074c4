"""Self-service: host intents generated from member objects, by annotations on them or by DiscoveryRules
(docs/design/sources.md §2, §3)."""
