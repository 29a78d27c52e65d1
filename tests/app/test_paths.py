"""Route paths live in `app/paths.py`: what Litestar and the direct routes serve, what the OpenAPI document
describes and what the request metrics label are the same paths."""

from __future__ import annotations

import pytest
from litestar import Litestar

from app import paths
from app.context import endpoint_of
from app.factory import DIRECT, create_litestar
from app.gateway import build_gateway
from app.openapi import build_openapi
from app.settings import load_settings


@pytest.fixture(scope="module")
def app() -> Litestar:
    return create_litestar(build_gateway(load_settings(None, env={})))


def test_every_route_is_a_path_constant(app: Litestar) -> None:
    constants = {getattr(paths, name) for name in paths.__all__}
    served = {route.path for route in app.routes} | set(DIRECT)
    assert not set(DIRECT) & {route.path for route in app.routes}  # one server per path
    assert served == {
        paths.CHAT_COMPLETIONS,
        paths.COMPLETIONS,
        paths.RESPONSES,
        paths.RESPONSE_ROUTE,
        paths.RESPONSE_INPUT_ITEMS_ROUTE,
        paths.RESPONSE_CANCEL_ROUTE,
        paths.RESPONSES_INPUT_TOKENS,
        paths.EMBEDDINGS,
        paths.MODELS,
        paths.MODEL_ROUTE,
        paths.UNLOAD_ROUTE,
        paths.HEALTH,
        paths.READY,
        paths.METRICS,
        paths.OPENAPI,
        paths.TOKENIZE,
        paths.DETOKENIZE,
        paths.TOKENIZER_INFO,
    }
    assert served <= constants


def test_every_documented_path_is_served(app: Litestar) -> None:
    served = {route.path_format for route in app.routes} | set(DIRECT)
    assert set(build_openapi()["paths"]) <= served


@pytest.mark.parametrize(
    ("path", "label"),
    [
        (paths.CHAT_COMPLETIONS, paths.CHAT_COMPLETIONS),
        (paths.RESPONSES, paths.RESPONSES),
        ("/v1/responses/resp_1", paths.RESPONSE),
        ("/v1/responses/resp_1/input_items", paths.RESPONSE_INPUT_ITEMS),
        ("/v1/responses/resp_1/cancel", paths.RESPONSE_CANCEL),
        (paths.RESPONSES_INPUT_TOKENS, paths.RESPONSES_INPUT_TOKENS),
        ("/v1/responses/resp_1/input_items/more", "other"),
        (paths.EMBEDDINGS, paths.EMBEDDINGS),
        (paths.MODELS, paths.MODELS),
        (f"{paths.MODELS}/org/some-model", paths.MODEL),
        ("/admin/unload/stub-chat", paths.ADMIN),
        (paths.HEALTH, paths.HEALTH),
        (paths.READY, paths.READY),
        (paths.METRICS, paths.METRICS),
        (paths.OPENAPI, paths.OPENAPI),
        ("/v1/models-but-not", "other"),
        ("/administrator", "other"),
        ("/v1/chat/completions/extra", "other"),
    ],
)
def test_endpoint_labels_come_from_the_paths(path: str, label: str) -> None:
    assert endpoint_of(path) == label
