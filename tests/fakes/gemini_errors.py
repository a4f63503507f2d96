"""Google-shaped error answers of the fake: the `{"error": {code, message, status, details}}` family."""

from __future__ import annotations

from typing import Any

from tests.fakes.claude_web_wire import WireError
from tests.fakes.gemini_wire import GOOGLE_HEADERS, JSON_TYPE, dumps, pretty

TYPE = "type.googleapis.com/google.rpc."
STUDIO = "generativelanguage.googleapis.com"
VERTEX = "aiplatform.googleapis.com"
PROJECT_NUMBER = "123456789012"

STATUS_NAME = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
               429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}

INVALID_KEY = "API key not valid. Please pass a valid API key."
UNREGISTERED = ("Method doesn't allow unregistered callers (callers without established identity). Please use "
                "API Key or other form of API consumer identity to call this API.")
BAD_CREDENTIALS = ("Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                   "other valid authentication credential. See "
                   "https://developers.google.com/identity/sign-in/web/devconsole-project.")
MISSING_CREDENTIALS = ("Request is missing required authentication credential. Expected OAuth 2 access token, login "
                       "cookie or other valid authentication credential. See "
                       "https://developers.google.com/identity/sign-in/web/devconsole-project.")
INSUFFICIENT_SCOPES = "Request had insufficient authentication scopes."
FORBIDDEN = "The caller does not have permission"
REGION_BLOCKED = "User location is not supported for the API use."
INTERNAL = ("An internal error has occurred. Please retry or report in "
            "https://developers.generativeai.google/guide/troubleshooting")
OVERLOADED = "The model is overloaded. Please try again later."
RATE_DOCS = "https://ai.google.dev/gemini-api/docs/rate-limits"
VERTEX_429 = ("Resource exhausted. Please try again later. Please refer to "
              "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.")


class Rejected(Exception):
    """A request the fake refuses: status, message and google.rpc details."""

    def __init__(self, code: int, message: str, details: list[dict[str, Any]] | None = None,
                 status: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details
        self.status = status or STATUS_NAME.get(code, "UNKNOWN")


def error_body(err: Rejected) -> dict[str, Any]:
    """The Google error object (proto3 JSON leaves out empty details)."""
    inner: dict[str, Any] = {"code": err.code, "message": err.message, "status": err.status}
    if err.details:
        inner["details"] = err.details
    return {"error": inner}


def native_error(err: Rejected) -> WireError:
    """An error answer of a native endpoint: pretty-printed JSON, as Google writes it."""
    return WireError(err.code, {**GOOGLE_HEADERS, "Content-Type": JSON_TYPE}, pretty(error_body(err)) + "\n")


def openai_error(err: Rejected) -> WireError:
    """An error answer of an OpenAI-compatible endpoint: Google's error object wrapped in a JSON array."""
    # The quirk clients trip over: `[{"error": {…}}]`, not OpenAI's `{"error": {…}}`.
    return WireError(err.code, {**GOOGLE_HEADERS, "Content-Type": JSON_TYPE}, dumps([error_body(err)]))


def error_info(reason: str, service: str, **metadata: str) -> dict[str, Any]:
    """A google.rpc.ErrorInfo entry."""
    return {"@type": TYPE + "ErrorInfo", "reason": reason, "domain": "googleapis.com",
            "metadata": {**metadata, "service": service}}


def localized(message: str) -> dict[str, Any]:
    """A google.rpc.LocalizedMessage entry."""
    return {"@type": TYPE + "LocalizedMessage", "locale": "en-US", "message": message}


def bad_request(message: str, field: str | None = None) -> Rejected:
    """400 INVALID_ARGUMENT with a google.rpc.BadRequest field violation, as the JSON parser answers."""
    violation = {"description": message} if field is None else {"field": field, "description": message}
    return Rejected(400, message, [{"@type": TYPE + "BadRequest", "fieldViolations": [violation]}])


def plain_bad_request(message: str) -> Rejected:
    """400 INVALID_ARGUMENT without details, as request validation answers."""
    return Rejected(400, message)


def not_found(model: str, version: str, method: str = "generateContent") -> Rejected:
    """404 for a model that does not exist (or does not support the method)."""
    return Rejected(404, f"models/{model} is not found for API version {version}, or is not supported for "
                         f"{method}. Call ListModels to see the list of available models and their supported methods.")


def vertex_not_found(project: str, location: str, model: str) -> Rejected:
    """Vertex's 404 for a publisher model that does not exist."""
    return Rejected(404, f"Publisher Model `projects/{project}/locations/{location}/publishers/google/models/{model}` "
                         "was not found or your project does not have access to it. Please ensure you are using a "
                         "valid model version. For more information, see: "
                         "https://cloud.google.com/vertex-ai/generative-ai/docs/learn/model-versions")


def _quota(model: str, daily: bool, delay: str, service: str) -> Rejected:
    per = "PerDay" if daily else "PerMinute"
    metric = f"{service}/generate_content_free_tier_requests"
    limit = "250" if daily else "10"
    violation = {"quotaMetric": metric, "quotaId": f"GenerateRequests{per}PerProjectPerModel-FreeTier",
                 "quotaDimensions": {"location": "global", "model": model}, "quotaValue": limit}
    message = (f"You exceeded your current quota, please check your plan and billing details. For more information "
               f"on this error, head to: {RATE_DOCS}. To monitor your current usage, head to: "
               f"https://ai.dev/usage?tab=rate-limit. \n* Quota exceeded for metric: {metric}, limit: {limit}, "
               f"model: {model}\nPlease retry in {delay}.")
    details = [{"@type": TYPE + "QuotaFailure", "violations": [violation]},
               {"@type": TYPE + "Help", "links": [{"description": "Learn more about Gemini API quotas",
                                                   "url": RATE_DOCS}]},
               {"@type": TYPE + "RetryInfo", "retryDelay": delay}]
    return Rejected(429, message, details)


def behaviour_error(behaviour: str, *, key: str, model: str, retry_delay: str, vertex: bool) -> Rejected:
    """The answer of a key (or service account) behaviour (gemini.md §4.3)."""
    service = VERTEX if vertex else STUDIO
    if behaviour == "invalid":
        return Rejected(400, INVALID_KEY, [error_info("API_KEY_INVALID", service), localized(INVALID_KEY)])
    if behaviour == "suspended":
        message = f"Permission denied: Consumer 'api_key:{key}' has been suspended."
        return Rejected(403, message, [error_info("CONSUMER_SUSPENDED", service,
                                                  consumer=f"projects/{PROJECT_NUMBER}"), localized(message)])
    if behaviour == "api_disabled":
        return _service_disabled(service)
    if behaviour == "forbidden":
        return Rejected(403, FORBIDDEN)
    if behaviour == "region_blocked":
        return Rejected(400, REGION_BLOCKED, status="FAILED_PRECONDITION")
    if behaviour == "rate_limited" and vertex:
        return Rejected(429, VERTEX_429)  # Vertex names no delay: the client must pick its own
    if behaviour in ("rate_limited", "daily_quota"):
        delay = retry_delay if behaviour == "rate_limited" else "17s"
        return _quota(model, behaviour == "daily_quota", delay, service)
    if behaviour == "internal":
        return Rejected(500, INTERNAL)
    return Rejected(503, OVERLOADED)


def _service_disabled(service: str) -> Rejected:
    title = "Vertex AI API" if service == VERTEX else "Generative Language API"
    url = f"https://console.developers.google.com/apis/api/{service}/overview?project={PROJECT_NUMBER}"
    message = (f"{title} has not been used in project {PROJECT_NUMBER} before or it is disabled. Enable it by "
               f"visiting {url} then retry. If you enabled this API recently, wait a few minutes for the action "
               f"to propagate to our systems and retry.")
    info = error_info("SERVICE_DISABLED", service, activationUrl=url, consumer=f"projects/{PROJECT_NUMBER}",
                      containerInfo=PROJECT_NUMBER, serviceTitle=title)
    links = [{"description": "Google developers console API activation", "url": url}]
    return Rejected(403, message, [info, localized(message), {"@type": TYPE + "Help", "links": links}])


def safety_rejection(index: int, civic: bool) -> Rejected:
    """400 of a model that does not take a safety category or threshold (the proxy retries once, §7)."""
    if civic:
        allowed = ", ".join(f"HarmCategory.HARM_CATEGORY_{c}" for c in
                            ("HATE_SPEECH", "SEXUALLY_EXPLICIT", "DANGEROUS_CONTENT", "HARASSMENT"))
        return plain_bad_request(f"* GenerateContentRequest.safety_settings[{index}]: element predicate failed: "
                                 f"$.category in ({allowed})\n")
    allowed = ", ".join(f"HarmBlockThreshold.{t}" for t in
                        ("BLOCK_LOW_AND_ABOVE", "BLOCK_MEDIUM_AND_ABOVE", "BLOCK_ONLY_HIGH", "BLOCK_NONE"))
    return plain_bad_request(f"* GenerateContentRequest.safety_settings[{index}].threshold: element predicate "
                             f"failed: $.threshold in ({allowed})\n")


def unauthenticated(reason: str, service: str, message: str = BAD_CREDENTIALS) -> Rejected:
    """401 UNAUTHENTICATED with its ErrorInfo reason."""
    return Rejected(401, message, [error_info(reason, service)])


def iam_denied(project: str, location: str, model: str) -> Rejected:
    """403 of a Vertex call into a project the token's service account does not belong to."""
    resource = f"//aiplatform.googleapis.com/projects/{project}/locations/{location}/publishers/google/models/{model}"
    message = f"Permission 'aiplatform.endpoints.predict' denied on resource '{resource}' (or it may not exist)."
    info = {"@type": TYPE + "ErrorInfo", "reason": "IAM_PERMISSION_DENIED", "domain": "aiplatform.googleapis.com",
            "metadata": {"permission": "aiplatform.endpoints.predict", "resource": resource[2:]}}
    return Rejected(403, message, [info])
