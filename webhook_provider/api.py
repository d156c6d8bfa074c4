"""The HTTP side of the webhook protocol: exact media type, exact status codes, JSON reasons for refusals.

ExternalDNS retries 500-510 and treats every other non-2xx as fatal (it exits), so 400 is reserved for a
body that is not a Changes document (or endpoint array) at all; a record that cannot be stored is skipped
and the rest of the batch answers 204. etcd trouble is always 503.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from importlib.resources import files
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from fleetdns.endpoint import WEBHOOK_MEDIA_TYPE, Endpoint, EndpointFormatError, parse_endpoint_list
from fleetdns.skydns.store import EtcdUnavailableError
from webhook_provider.changes import parse_changes
from webhook_provider.metrics import Metrics
from webhook_provider.provider import Provider

log = logging.getLogger(__name__)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
OPENAPI_FILE = "openapi.yaml"  # this API's description, shipped in the wheel beside this module


def openapi_description() -> bytes:
    """The OpenAPI description of this API (webhook_provider/openapi.yaml), as GET /openapi.yaml serves it."""
    return files("webhook_provider").joinpath(OPENAPI_FILE).read_bytes()


def _json_response(body: Any, status: int = 200) -> Response:
    return _encoded_json_response(json.dumps(body, separators=(",", ":"), ensure_ascii=False), status)


def _encoded_json_response(body: str | bytes, status: int = 200) -> Response:
    response = Response(body, status=status)
    response.headers["Content-Type"] = WEBHOOK_MEDIA_TYPE  # set verbatim: no charset, no spaces
    response.headers["Vary"] = "Content-Type"
    return response


def _endpoint_array(endpoints: list[Endpoint]) -> bytes:
    """A JSON array of endpoints, encoded one endpoint at a time: never a second tree of dicts beside them."""
    return b"[" + b",".join(_ENCODER.encode(endpoint.to_json()).encode() for endpoint in endpoints) + b"]"


def _error(status: int, message: str, path: str | None = None) -> Response:
    body = {"error": message}
    if path:
        body["path"] = path
    # ASCII-escaped: a path may quote a label key that holds a lone surrogate, which has no UTF-8 form
    return _encoded_json_response(json.dumps(body, separators=(",", ":")), status)


def _body_type_ok(content_type: str | None) -> bool:
    """v0.22 sends the media type, older releases sent none; plain JSON is fine for humans with curl."""
    if not content_type:
        return True
    compact = content_type.replace(" ", "").lower()
    if compact == WEBHOOK_MEDIA_TYPE:
        return True
    return compact.split(";")[0] == "application/json"


def _read_json() -> Any:
    """The request body as JSON; raises EndpointFormatError for bodies that are not JSON.

    The bytes are dropped before decoding the JSON: the largest body is held as bytes, then as text, then as
    the decoded tree, never all three at once.
    """
    raw = request.get_data(cache=False)  # honours MAX_CONTENT_LENGTH (413)
    try:
        text = raw.decode("utf-8", "surrogatepass")  # as json.loads(bytes) decodes UTF-8
        del raw
        return json.loads(text) if text.strip() else None
    except (ValueError, UnicodeDecodeError) as error:
        raise EndpointFormatError("$", f"body is not valid JSON: {error}") from None
    except RecursionError:
        # The decoder recurses once per level; ExternalDNS's deepest document is 4 levels (Changes, list,
        # endpoint, providerSpecific item), so a body this deep is not a Changes document.
        raise EndpointFormatError("$", "body nests arrays or objects too deeply to decode (about "
                                       f"{sys.getrecursionlimit()} levels); a Changes document has 4") from None


def _too_large(size: int | None, limit: int) -> Response:
    """413, logged: ExternalDNS exits on it and resends the same body after its restart, so the operator must act."""
    log.error("request body over --max-request-bytes refused; ExternalDNS will exit and resend it: raise "
              "--max-request-bytes and the container's memory limit together, or let ExternalDNS sync the zone in "
              "parts (webhook_provider/README.md, \"Request size and memory\")",
              extra={"route": request.path, "bytes": size, "limit": limit})
    size_text = f"of {size} bytes " if size is not None else ""
    return _error(413, f"request body {size_text}exceeds the limit of {limit} bytes (--max-request-bytes)")


def create_api(provider: Provider, metrics: Metrics, max_request_bytes: int) -> Flask:
    app = Flask("fleetdns-webhook", static_folder=None)  # Flask's default would serve files from ./static/
    description = openapi_description()
    app.config["MAX_CONTENT_LENGTH"] = max_request_bytes

    @app.before_request
    def start_timer() -> Response | None:
        g.started = time.perf_counter()
        if request.method == "POST":
            if not _body_type_ok(request.headers.get("Content-Type")):
                return _error(415, f"unsupported Content-Type {request.headers.get('Content-Type')!r}; "
                                   f"send {WEBHOOK_MEDIA_TYPE} or application/json")
            if request.content_length is not None and request.content_length > max_request_bytes:
                return _too_large(request.content_length, max_request_bytes)
        return None

    @app.after_request
    def observe(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        labels = (route, request.method, str(response.status_code))
        metrics.requests.labels(*labels).inc()
        metrics.request_latency.labels(*labels).observe(time.perf_counter() - g.get("started", time.perf_counter()))
        return response

    @app.get("/")
    def negotiate() -> Response:
        return _json_response(provider.domain_filter.to_json())

    @app.get("/records")
    def get_records() -> Response:
        try:
            body = provider.records()  # already encoded: cached while nothing changes
        except EtcdUnavailableError as error:
            return _error(503, str(error))
        return _encoded_json_response(body)

    @app.post("/records")
    def apply_changes() -> Response:
        try:
            changes = parse_changes(_read_json(), provider.domain_filter, consume=True)
        except EndpointFormatError as error:
            metrics.applies.labels("rejected").inc()
            log.warning("malformed Changes document refused", extra={"path": error.path, "reason": error.message})
            return _error(400, error.message, error.path)
        try:
            provider.apply(changes)
        except EtcdUnavailableError as error:
            metrics.applies.labels("failed").inc()
            return _error(503, str(error))
        response = Response(status=204)
        response.headers["Vary"] = "Content-Type"
        return response

    @app.get("/openapi.yaml")
    def openapi() -> Response:
        return Response(description, mimetype="application/yaml")

    @app.post("/adjustendpoints")
    def adjust_endpoints() -> Response:
        try:
            # no name for the parsed list: it is freed as soon as the adjusted endpoints exist
            adjusted = provider.adjust_endpoints(parse_endpoint_list(_read_json(), "$", consume=True))
        except EndpointFormatError as error:
            return _error(400, error.message, error.path)
        return _encoded_json_response(_endpoint_array(adjusted))

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_: RequestEntityTooLarge) -> Response:
        return _too_large(None, max_request_bytes)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        return _error(error.code or 500, error.description or error.name)

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        log.exception("unexpected error", extra={"route": request.path})
        return _error(500, f"internal error: {type(error).__name__}")

    return app
