"""Every route's path, in one place: the route decorators, the OpenAPI document, the
request metrics' endpoint labels (`app.context.endpoint_of`) and the auth layer's open
paths all read them here."""

from __future__ import annotations

__all__ = [
    "ADMIN",
    "CHAT_COMPLETIONS",
    "COMPLETIONS",
    "DETOKENIZE",
    "HEALTH",
    "METRICS",
    "MODEL",
    "MODELS",
    "MODEL_ROUTE",
    "OPENAPI",
    "READY",
    "RESPONSES",
    "TOKENIZE",
    "TOKENIZER_INFO",
    "UNLOAD_ROUTE",
]

CHAT_COMPLETIONS = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
RESPONSES = "/v1/responses"
MODELS = "/v1/models"
MODEL = f"{MODELS}/{{model}}"
"""One model, as the OpenAPI document and the endpoint label name it."""
MODEL_ROUTE = f"{MODELS}/{{model:path}}"
"""The same as Litestar routes it: a model id may hold slashes (`org/name`)."""
ADMIN = "/admin"
"""The admin routes' prefix (and their one endpoint label)."""
UNLOAD_ROUTE = f"{ADMIN}/unload/{{model:path}}"
HEALTH = "/health"
READY = "/ready"
METRICS = "/metrics"
OPENAPI = "/openapi.json"
TOKENIZE = "/tokenize"
"""The tokenizer endpoints sit beside `/v1`, where vLLM serves them (and lm-eval looks)."""
DETOKENIZE = "/detokenize"
TOKENIZER_INFO = "/tokenizer_info"
