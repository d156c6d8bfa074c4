"""What a kube-apiserver saw: its audit log, one event per request by a ServiceAccount (the identities FleetDNS runs
under), parsed. The server writes it before it answers (``--audit-log-mode=blocking``), so a request a process made
is in the log once the process has its answer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# Requests by ServiceAccounts only, metadata only (never a body: no Secret's data, no token lands in the log); a
# request is logged as it completes, a watch also as it opens (ResponseStarted).
POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
"""


def audit_args(workdir: Path) -> list[str]:
    """The kube-apiserver flags that write ``workdir/audit.log`` with ``POLICY`` (the policy file written here)."""
    policy = workdir / "audit-policy.yaml"
    policy.write_text(POLICY)
    return [f"--audit-policy-file={policy}", f"--audit-log-path={workdir / 'audit.log'}", "--audit-log-format=json",
            "--audit-log-mode=blocking", "--audit-log-maxbackup=0"]


@dataclass(frozen=True)
class AuditedRequest:
    """One request as the API server authorized and answered it."""

    user: str  # system:serviceaccount:<namespace>:<name>
    verb: str  # get, list, watch, create, update, patch, delete, deletecollection
    group: str  # "" for the core group
    resource: str  # with its subresource: "dnsendpoints/status"
    namespace: str  # "" for a cluster-scoped object or a request across namespaces
    code: int  # the answer's HTTP status: 403 is a refusal by RBAC

    @property
    def refused(self) -> bool:
        return self.code == 403


def read_audit_log(path: Path) -> list[AuditedRequest]:
    """Every resource request in the log (requests for non-resource URLs such as /version left out)."""
    requests = []
    for line in path.read_text().splitlines() if path.exists() else ():
        event = json.loads(line)
        ref = event.get("objectRef")
        if not ref:
            continue
        resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        requests.append(AuditedRequest(event["user"]["username"], event["verb"], ref.get("apiGroup", ""), resource,
                                       ref.get("namespace", ""), int((event.get("responseStatus") or {}).get(
                                           "code", 0))))
    return requests
