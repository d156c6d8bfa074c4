"""A thin JSON client for the Kubernetes API: raw dicts in and out, a timeout on every call.

The generated ``kubernetes`` models cost far more CPU than the aggregator's own parsing, so only
the client's configuration (kubeconfig, in-cluster, credentials, TLS) and connection pool are used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from fleetdns.config import ConfigError

DEFAULT_TIMEOUT = 10.0
MERGE_PATCH = "application/merge-patch+json"
OPENED = "_OPENED"  # pseudo event: the watch stream is open (the server answers)


class KubeError(Exception):
    """An API call that failed: ``status`` is the HTTP status (0 when the server did not answer)."""

    @property
    def refused(self) -> bool:
        """No server listens (connection refused): cheap to retry often, unlike one that accepts and hangs."""
        return self.status == 0 and self.reason == "Refused"

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}" if message else f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.message = message


def host_api_client(kubeconfig: str) -> k8s_client.ApiClient:
    """``--kubeconfig`` when given; else in-cluster; else ``$KUBECONFIG`` / ``~/.kube/config``."""
    if kubeconfig:
        return k8s_config.new_client_from_config(config_file=kubeconfig)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = k8s_client.Configuration()
        k8s_config.load_incluster_config(client_configuration=configuration)
        return k8s_client.ApiClient(configuration)
    return k8s_config.new_client_from_config()


def load_host_client(kubeconfig: str) -> KubeClient:
    """The host-cluster client for ``--kubeconfig``; a configuration that does not load is a ConfigError."""
    try:
        return KubeClient(host_api_client(kubeconfig))
    except Exception as error:  # noqa: BLE001 - the loader's message may quote the file; name the flag only
        raise ConfigError("--kubeconfig", kubeconfig or "(default)",
                          f"cannot load a host-cluster configuration ({type(error).__name__})") from None


def member_api_client(kubeconfig: dict[str, Any]) -> k8s_client.ApiClient:
    """From the (parsed) kubeconfig held in a member's Secret; never logged."""
    return k8s_config.new_client_from_config_dict(kubeconfig)


class NotLeaderError(KubeError):
    """A write refused locally: this replica no longer holds a fresh lease."""

    def __init__(self) -> None:
        super().__init__(0, "NotLeader", "write refused: this replica does not hold a fresh lease")


class KubeClient:
    """JSON requests against one API server, sharing the ApiClient's urllib3 pool."""

    def __init__(self, api_client: k8s_client.ApiClient,
                 write_allowed: Callable[[], bool] | None = None) -> None:
        self.api_client = api_client
        self.host = api_client.configuration.host
        self._pool = api_client.rest_client.pool_manager
        self._write_allowed = write_allowed

    def fenced(self, write_allowed: Callable[[], bool]) -> KubeClient:
        """The same connection, but every write first asks ``write_allowed`` (leader fencing)."""
        return KubeClient(self.api_client, write_allowed)

    def _headers(self, method: str, path: str, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        _, _, headers, _, _ = self.api_client.param_serialize(method, path, header_params=headers,
                                                              auth_settings=["BearerToken"])
        return headers

    def _send(self, method: str, path: str, query: dict[str, Any] | None, body: Any, content_type: str | None,
              timeout: float | tuple[float, float], stream: bool = False) -> urllib3.BaseHTTPResponse:
        url = self.host + path + (f"?{urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        if isinstance(timeout, tuple):
            limit = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        else:
            limit = urllib3.Timeout(connect=min(timeout, 5.0), read=timeout)
        try:
            return self._pool.request(method, url, body=data, headers=self._headers(method, path, content_type),
                                      timeout=limit, preload_content=not stream, retries=False)
        except urllib3.exceptions.HTTPError as error:
            raise unreachable(error) from error

    def forward(self, method: str, target: str, body: bytes | None, headers: dict[str, str],
                timeout: tuple[float, float | None]) -> urllib3.BaseHTTPResponse:
        """Send a request as another client wrote it (``target``: path and query), with this client's credentials;
        the response is left unread, to be streamed. Raises KubeError(0) when the server does not answer."""
        path = target.split("?", 1)[0]
        sent = {**headers, **self._headers(method, path, None)}
        sent.update({key: value for key, value in headers.items() if key in ("Accept", "Content-Type")})
        try:
            return self._pool.request(method, self.host + target, body=body, headers=sent,
                                      timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
                                      preload_content=False, decode_content=False, retries=False)
        except urllib3.exceptions.HTTPError as error:
            raise unreachable(error) from error

    def request(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None,
                content_type: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        if method != "GET" and self._write_allowed is not None and not self._write_allowed():
            raise NotLeaderError()
        if body is not None and content_type is None:
            content_type = "application/json"
        response = self._send(method, path, query, body, content_type, timeout)
        payload = _decode(response.data)
        if response.status >= 300:
            raise KubeError(response.status, str(payload.get("reason") or response.reason),
                            str(payload.get("message") or ""))
        return payload

    def get(self, path: str, query: dict[str, Any] | None = None, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        return self.request("GET", path, query, timeout=timeout)

    def get_if_exists(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``; None when there is none (404), any other failure raised."""
        try:
            return self.get(path)
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", path, body=body)

    def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", path, body=body, content_type=MERGE_PATCH)

    def replace(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("PUT", path, body=body)

    def delete(self, path: str) -> dict[str, Any]:
        return self.request("DELETE", path)

    def watch(self, path: str, query: dict[str, Any], read_timeout: float,
              on_open: Callable[[urllib3.BaseHTTPResponse | None], None] | None = None) -> Iterator[dict[str, Any]]:
        """An OPENED pseudo event, then one dict per line, until the stream ends or a read times out.

        ``on_open`` receives the response (and None when it ends), so another thread can cut it short.
        """
        response = self._send("GET", path, {**query, "watch": "true"}, None, None, (5.0, read_timeout), stream=True)
        if on_open is not None:
            on_open(response)
        try:
            if response.status >= 300:
                payload = _decode(response.read())
                raise KubeError(response.status, str(payload.get("reason") or response.reason),
                                str(payload.get("message") or ""))
            yield {"type": OPENED}
            buffer = b""
            for chunk in response.stream(65536):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        except urllib3.exceptions.ReadTimeoutError:
            return  # a quiet stream ends like a server-side timeout; the caller resumes from its version
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise unreachable(error) from error
        finally:
            if on_open is not None:
                on_open(None)
            response.release_conn()
            response.close()


def unreachable(error: Exception) -> KubeError:
    """The KubeError for a request the server never answered; "Refused" when nothing listens."""
    refused = isinstance(error, urllib3.exceptions.NewConnectionError) and isinstance(
        error.__cause__ or error.__context__, ConnectionRefusedError)
    return KubeError(0, "Refused" if refused else "Unreachable", type(error).__name__)


def _decode(data: bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(data) if data else {}
    except ValueError:
        return {"message": data[:200].decode(errors="replace")}
    return decoded if isinstance(decoded, dict) else {}
