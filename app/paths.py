"""Every route's path, in one place: the route decorators, the OpenAPI document, the
request metrics' endpoint labels (`app.context.endpoint_of`) and the auth layer's open
paths all read them here."""

from __future__ import annotations

__all__ = [
    "ADMIN",
    "CHAT_COMPLETIONS",
    "COMPLETIONS",
    "DETOKENIZE",
    "EMBEDDINGS",
    "HEALTH",
    "METRICS",
    "MODEL",
    "MODELS",
    "MODEL_ROUTE",
    "OPENAPI",
    "READY",
    "RESPONSE",
    "RESPONSES",
    "RESPONSES_INPUT_TOKENS",
    "RESPONSE_CANCEL",
    "RESPONSE_CANCEL_ROUTE",
    "RESPONSE_INPUT_ITEMS",
    "RESPONSE_INPUT_ITEMS_ROUTE",
    "RESPONSE_ROUTE",
    "TOKENIZE",
    "TOKENIZER_INFO",
    "UNLOAD_ROUTE",
]

CHAT_COMPLETIONS = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
RESPONSES = "/v1/responses"
RESPONSE = f"{RESPONSES}/{{response_id}}"
"""One stored response (the OpenAPI document's name and the endpoint label; also its route)."""
RESPONSE_INPUT_ITEMS = f"{RESPONSE}/input_items"
RESPONSE_ROUTE = f"{RESPONSES}/{{response_id:str}}"
"""The same as Litestar routes it."""
RESPONSE_INPUT_ITEMS_ROUTE = f"{RESPONSE_ROUTE}/input_items"
RESPONSE_CANCEL = f"{RESPONSE}/cancel"
RESPONSE_CANCEL_ROUTE = f"{RESPONSE_ROUTE}/cancel"
RESPONSES_INPUT_TOKENS = f"{RESPONSES}/input_tokens"
EMBEDDINGS = "/v1/embeddings"
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
