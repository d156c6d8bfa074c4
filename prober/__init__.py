"""The regional prober: checks every cluster address of every intent with a ``spec.healthCheck`` from its
region, and reports what it sees Down to the host cluster (HealthReports) under its region's Lease.

Stages, one module each: ``targets`` (intents → checks to run), ``schedule`` (when), ``checks`` (one check
on a fresh connection), ``thresholds`` (consecutive results → Up/Down), ``reports`` (HealthReport writes),
``lease`` (the region's vote); ``engine`` wires them, ``__main__`` wires configuration to the engine.
"""
