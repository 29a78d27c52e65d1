"""LlamaProvider against the real SmolLM2-135M GGUF at one slot and at four: no mocks.

Timing on a shared 2-core machine swings widely, so what happens when is checked by the
engine's exact step counts (`provider.stats`) and by the order of events, not by clocks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import jsonschema
import msgspec
import pytest
import pytest_asyncio

from pipelines.errors import CancelReason, ContextLengthExceeded, GenerationFailed, InvalidRequest, ModelUnavailable
from pipelines.providers.base import CancelToken, DecodeParams, LoadFailure, Prompt
from pipelines.providers.factory import DefaultProviders
from pipelines.providers.llama import LlamaProvider
from pipelines.providers.llama.engine import Engine
from pipelines.providers.llama.placement import model_params
from pipelines.providers.llama.runtime import runtime
from pipelines.providers.llama.sequences import Seq, Slot
from pipelines.providers.stub import StubProvider
from pipelines.types import Message, Piece, ResponseFormat
from tests.pipelines.providers.llama.helpers import (
    GREEDY,
    LONG,
    RAINBOW,
    RAMBLE,
    SEEDED,
    ask,
    collect,
    data,
    module_loop,
    plain_greedy,
    text_of,
    wait_for,
)
from tests.support.configs import PERSON_SCHEMA, SMOLLM2_SHA256, smollm2_config
from tests.support.served import REPO

OVERFLOW = Prompt(messages=(Message(role="user", content="word " * 3000),))

# --- building and loading ------------------------------------------------------------------


@pytest.mark.parametrize("slots", [1, 4])
def test_one_provider_class_for_any_number_of_slots(tmp_path: Path, slots: int) -> None:
    provider = DefaultProviders(cache_dir=tmp_path)(smollm2_config(slots=slots))
    assert type(provider) is LlamaProvider
    assert provider.max_choices == slots
    assert provider.holds_weights and provider.kind == "llama_cpp"
    assert not StubProvider(smollm2_config()).holds_weights


@pytest.mark.slow
@module_loop
async def test_missing_file_is_a_load_failure(tmp_path: Path) -> None:
    provider = LlamaProvider(smollm2_config(path=str(tmp_path / "absent.gguf")), cache_dir=tmp_path)
    assert provider.foreseen_failure() is not None
    with pytest.raises(LoadFailure) as caught:
        await provider.load()
    assert caught.value.reason == "missing_file"
    assert not provider.loaded


@pytest.mark.slow
@module_loop
async def test_wrong_checksum_is_a_load_failure(tmp_path: Path) -> None:
    provider = LlamaProvider(smollm2_config(sha256="0" * 64), cache_dir=tmp_path)
    with pytest.raises(LoadFailure) as caught:
        await provider.load()
    assert caught.value.reason == "checksum_mismatch"
    assert caught.value.detail == f"expected {'0' * 64}, got {SMOLLM2_SHA256}"
    assert not provider.loaded


@pytest.mark.slow
@module_loop
async def test_garbage_file_is_a_load_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf at all" * 100)
    provider = LlamaProvider(smollm2_config(path=str(garbage), sha256=None), cache_dir=tmp_path)
    with pytest.raises(LoadFailure) as caught:
        await provider.load()
    assert caught.value.reason == "load_error"


def test_gpu_settings_reach_llama_cpps_model_parameters() -> None:
    llama_cpp = runtime()
    config = smollm2_config(n_gpu_layers=5, main_gpu=1, split_mode="none", tensor_split=[3.0, 1.0])
    params, keep = model_params(config)
    assert (params.n_gpu_layers, params.main_gpu) == (5, 1)
    assert params.split_mode == llama_cpp.LLAMA_SPLIT_MODE_NONE
    assert [params.tensor_split[i] for i in range(3)] == [3.0, 1.0, 0.0] and keep is not None
    # unset: every layer where llama.cpp has a GPU backend, none where it has not
    default, _ = model_params(smollm2_config())
    assert default.n_gpu_layers == (-1 if llama_cpp.llama_supports_gpu_offload() else 0)
    assert default.split_mode == llama_cpp.LLAMA_SPLIT_MODE_LAYER


@pytest.mark.slow
@module_loop
async def test_a_model_says_where_it_runs(tmp_path: Path) -> None:
    provider = LlamaProvider(smollm2_config(n_gpu_layers=8, split_mode="none"), cache_dir=tmp_path)
    assert provider.placement() is None  # not loaded
    await provider.load()
    try:
        gpu = bool(runtime().llama_supports_gpu_offload())
        assert provider.placement() == {"backend": "gpu" if gpu else "cpu", "layers": 30, "gpu_layers": 8 if gpu else 0}
        assert text_of(await collect(provider, RAINBOW, DecodeParams(max_tokens=4, temperature=0.0)))
    finally:
        await provider.unload()
    assert provider.placement() is None


@pytest.mark.slow
@module_loop
async def test_flash_attention_is_the_passports_choice(tmp_path: Path) -> None:
    """Off unless asked for; on, llama.cpp computes attention its other way (in half
    precision on this CPU): the logprobs of a fresh greedy answer move by up to a few
    tenths, and each setting repeats itself exactly."""
    params = DecodeParams(max_tokens=8, temperature=0.0, logprobs=True)

    async def logprobs(flash: bool) -> tuple[list[bytes], list[float]]:
        provider = LlamaProvider(smollm2_config(slots=1, flash_attention=flash), cache_dir=tmp_path)
        await provider.load()
        try:
            runs = [await collect(provider, RAINBOW, params) for _ in range(2)]
        finally:
            await provider.unload()
        values = [[p.logprob.logprob for p in run if p.logprob is not None] for run in runs]
        assert values[0] == values[1] and len(values[0]) == 8  # each setting repeats exactly
        return [p.data for p in runs[0]], values[0]

    assert smollm2_config().flash_attention is False
    (plain_tokens, plain), (flash_tokens, flash) = await logprobs(False), await logprobs(True)
    assert flash != plain
    assert flash_tokens[0] == plain_tokens[0] and flash[0] == pytest.approx(plain[0], abs=0.5)


class _SeatingFails(Engine):
    def _seat(self, seq: Seq, free: list[Slot]) -> Slot:
        raise RuntimeError("no slot today")


@pytest.mark.slow
@module_loop
async def test_a_failure_while_seating_cuts_the_request_off(tmp_path: Path) -> None:
    """A bug while a request is given its slot ends the engine's thread: the request gets
    GenerationFailed naming it (it had left the queue and held no slot yet: it used to
    wait for ever), and the model still unloads."""
    provider = LlamaProvider(smollm2_config(slots=2), cache_dir=tmp_path, engine=_SeatingFails)
    await provider.load()
    try:
        with pytest.raises(GenerationFailed, match="no slot today"):
            await asyncio.wait_for(collect(provider, RAINBOW, GREEDY), 60)
    finally:
        await asyncio.wait_for(provider.unload(), 60)


@pytest.mark.slow
@module_loop
@pytest.mark.parametrize("mib", [0, 1])
async def test_the_host_prompt_cache_keeps_within_its_budget(tmp_path: Path, mib: int) -> None:
    """`prompt_cache_mib` bounds the states kept in host memory: 0 keeps none, and a state
    larger than the budget (about 2 MB here, at 23 KB per token) is not kept either."""
    provider = LlamaProvider(smollm2_config(slots=1, prompt_cache_mib=mib), cache_dir=tmp_path)
    await provider.load()
    try:
        for topic in ("rivers", "deserts", "rivers"):
            await collect(provider, ask(f"Describe three facts about {topic} and where they are found."), GREEDY)
        assert (provider.stats.saved_prompts, provider.stats.restored_prompts, provider.stats.host_bytes) == (0, 0, 0)
    finally:
        await provider.unload()


@pytest.mark.slow
@module_loop
@pytest.mark.parametrize("slots", [1, 4])
async def test_load_unload_reload(tmp_path: Path, slots: int) -> None:
    provider = LlamaProvider(smollm2_config(slots=slots), cache_dir=tmp_path)
    await provider.load()
    assert provider.loaded
    assert provider.model_path is not None
    assert provider.model_path.name.endswith(".gguf")
    assert provider.context_length == 2048  # each slot has the whole context
    await provider.unload()
    assert not provider.loaded
    with pytest.raises(ModelUnavailable):
        await collect(provider, RAINBOW, GREEDY)
    await provider.load()
    assert text_of(await collect(provider, RAINBOW, DecodeParams(max_tokens=4, temperature=0.0)))
    await provider.unload()


@pytest.mark.slow
@module_loop
@pytest.mark.parametrize("slots", [1, 2])
async def test_unload_cuts_off_running_generations(tmp_path: Path, slots: int) -> None:
    provider = LlamaProvider(smollm2_config(slots=slots), cache_dir=tmp_path)
    await provider.load()
    streams = [provider.generate(RAMBLE, LONG, CancelToken()) for _ in range(slots)]
    for stream in streams:
        await anext(stream)
    await asyncio.wait_for(provider.unload(), timeout=60)
    assert not provider.loaded
    for stream in streams:
        with pytest.raises(GenerationFailed):
            async for _ in stream:
                pass


def test_one_model_unloading_leaves_the_others_quiet() -> None:
    """llama.cpp's log hook is process-wide: it stays quiet until the last loaded model's
    QuietLog is removed (a second remove of one changes nothing), then goes back to
    llama-cpp-python's. In a child process: the hook is global."""
    code = textwrap.dedent(
        """
        import ctypes
        from pipelines.providers.llama.runtime import QuietLog, runtime
        llama_cpp = runtime()
        def current():
            callback, data = llama_cpp.llama_log_callback(), ctypes.c_void_p()
            llama_cpp.llama_log_get(ctypes.byref(callback), ctypes.byref(data))
            return ctypes.cast(callback, ctypes.c_void_p).value
        default = ctypes.cast(llama_cpp._logger.llama_log_callback, ctypes.c_void_p).value
        one, two = QuietLog(), QuietLog()
        one.install(); two.install(); quiet = current()
        one.remove(); one.remove(); after_one = current()
        two.remove(); after_both = current()
        print(quiet != default, after_one == quiet, after_both == default)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.split() == ["True", "True", "True"]


@pytest.mark.parametrize(("environment", "expected"), [(None, "3000"), ("12345", "12345")])
def test_openmp_threads_spin_briefly_unless_the_environment_says(
    tmp_path: Path, environment: str | None, expected: str
) -> None:
    # In a child process: libgomp reads the variable once, when llama.cpp's libraries load.
    code = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from pipelines.providers.llama.runtime import QuietLog
        from pipelines.providers.llama.weights import open_model
        from tests.support.configs import smollm2_config
        open_model(smollm2_config(), cache_dir=Path({str(tmp_path)!r}), quiet=QuietLog())
        print(os.environ["GOMP_SPINCOUNT"])
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    if environment is not None:
        env["GOMP_SPINCOUNT"] = environment
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, check=True)
    assert out.stdout.split() == [expected]


@pytest.mark.slow
@module_loop
async def test_capabilities(smol: LlamaProvider) -> None:
    caps = smol.capabilities
    assert caps["json_schema"] and caps["logprobs"] and caps["streaming"]
    assert not caps["tool_calls"]
    assert LlamaProvider(smollm2_config(tools=True), cache_dir=Path(".")).capabilities["tool_calls"]
    assert LlamaProvider(smollm2_config(format="harmony"), cache_dir=Path(".")).capabilities["tool_calls"]


# --- generation ------------------------------------------------------------------------------


@pytest.mark.slow
@module_loop
async def test_greedy_output_is_plain_llama_cpp_pythons(smol: LlamaProvider, tmp_path: Path) -> None:
    """The engine's tokens at temperature 0 are those of llama-cpp-python's own `Llama`
    from a fresh context (a reference that shares no code with the engine)."""
    assert smol.model_path is not None
    for prompt in (RAMBLE, RAINBOW):
        ours = b"".join(data(await collect(smol, prompt, DecodeParams(max_tokens=48, temperature=0.0))))
        theirs = await asyncio.to_thread(plain_greedy, smol.model_path, smol.prompts.tokens(prompt), 48)
        assert ours == theirs


@pytest.mark.slow
@module_loop
async def test_rainbow_answer_is_sensible(smol: LlamaProvider) -> None:
    pieces = await collect(smol, RAINBOW, DecodeParams(max_tokens=48, temperature=0.0))
    assert all(p.tokens == 1 for p in pieces)
    text = text_of(pieces).lower()
    colors = {"red", "orange", "yellow", "green", "blue", "indigo", "violet", "purple"}
    assert sum(color in text for color in colors) >= 2, text
    assert b"<|im_end|>" not in b"".join(p.data for p in pieces)  # EOS ends the output, unseen


@pytest.mark.slow
@module_loop
async def test_greedy_is_repeatable(smol: LlamaProvider) -> None:
    first = await collect(smol, RAMBLE, GREEDY)
    await collect(smol, RAINBOW, GREEDY)  # a different prompt in between must leave no trace
    second = await collect(smol, RAMBLE, GREEDY)
    assert data(first) == data(second)


@pytest.mark.slow
@module_loop
async def test_seeded_sampling_is_repeatable(smol: LlamaProvider) -> None:
    first = await collect(smol, RAMBLE, SEEDED)
    second = await collect(smol, RAMBLE, SEEDED)
    other = await collect(smol, RAMBLE, msgspec.structs.replace(SEEDED, seed=99))
    assert data(first) == data(second)
    assert data(first) != data(other)


@pytest.mark.slow
@module_loop
async def test_max_tokens_is_honoured(smol: LlamaProvider) -> None:
    assert len(await collect(smol, RAMBLE, DecodeParams(max_tokens=17, temperature=0.0))) == 17


def repeated(pieces: list[Piece]) -> int:
    """Tokens that repeat an earlier token of the same output."""
    return len(pieces) - len(set(data(pieces)))


@pytest.mark.slow
@module_loop
@pytest.mark.parametrize(
    "penalty",
    [
        {"repeat_penalty": 1.3},
        {"frequency_penalty": 1.0},
        {"presence_penalty": 1.0},
        {"repeat_penalty": 1.3, "frequency_penalty": 0.5, "presence_penalty": 0.5},
    ],
    ids=["repeat", "frequency", "presence", "all"],
)
async def test_penalties_take_effect(smol: LlamaProvider, penalty: dict[str, float]) -> None:
    """Greedy output is fully determined, so a penalty that reached the sampler changes it,
    and away from repeating itself (SmolLM2's story repeats 19 of 64 tokens unpenalised)."""
    plain = await collect(smol, RAMBLE, DecodeParams(max_tokens=64, temperature=0.0))
    penalised = await collect(smol, RAMBLE, DecodeParams(max_tokens=64, temperature=0.0, **penalty))
    assert len(penalised) == 64
    assert data(penalised) != data(plain)
    assert repeated(penalised) < repeated(plain), (repeated(penalised), repeated(plain))


@pytest.mark.slow
@module_loop
async def test_requests_at_once_each_match_alone(smol: LlamaProvider) -> None:
    """Serialised at one slot, decoded side by side at four: the same tokens either way."""
    params = DecodeParams(max_tokens=6, temperature=0.0)
    alone = await collect(smol, RAMBLE, params)
    together = await asyncio.gather(*(collect(smol, RAMBLE, params) for _ in range(3)))
    assert not smol.busy
    assert [data(run) for run in together] == [data(alone)] * 3


# --- checks before any decode work ---------------------------------------------------------


@pytest.mark.slow
@module_loop
async def test_context_overflow_raises_before_decoding(smol: LlamaProvider) -> None:
    assert smol.count_tokens(OVERFLOW) > smol.context_length == 2048
    before = dataclasses.replace(smol.stats)
    with pytest.raises(ContextLengthExceeded) as caught:
        await collect(smol, OVERFLOW, GREEDY)
    assert caught.value.param == "messages"
    assert smol.stats == before  # the engine never saw it


@pytest.mark.slow
@module_loop
async def test_bad_request_does_not_wait_for_a_running_generation(smol: LlamaProvider) -> None:
    decoded = smol.stats.decoded_tokens
    stream = smol.generate(RAMBLE, LONG, CancelToken())
    await anext(stream)
    try:
        with pytest.raises(ContextLengthExceeded):
            await collect(smol, OVERFLOW, GREEDY)
        # It failed while the other generation still held its slot, far from its end.
        assert smol.busy and smol.stats.running == 1
        assert smol.stats.decoded_tokens - decoded < LONG.max_tokens // 2
    finally:
        await stream.aclose()
    assert not smol.busy


@pytest.mark.slow
@module_loop
async def test_unsatisfiable_schema_fails_before_decoding(smol: LlamaProvider) -> None:
    schema = {"type": "integer", "minimum": 5, "maximum": 3}
    params = DecodeParams(max_tokens=8, response_format=ResponseFormat(type="json_schema", schema=schema))
    before = dataclasses.replace(smol.stats)
    with pytest.raises(InvalidRequest) as caught:
        await collect(smol, RAINBOW, params)
    assert caught.value.code == "invalid_json_schema"
    assert smol.stats == before


@pytest.mark.slow
@module_loop
async def test_more_choices_than_slots_is_a_client_error(smol: LlamaProvider) -> None:
    params = [DecodeParams(max_tokens=3, temperature=0.0)] * (smol.max_choices + 1)
    with pytest.raises(InvalidRequest) as caught:
        smol.generate_choices(RAINBOW, params, CancelToken())
    assert caught.value.param == "n"
    assert not smol.busy


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=[1, 4], ids=["slots1", "slots4"])
async def small(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LlamaProvider]:
    """SmolLM2 with a 256-token context per slot: filling it takes a fraction of a second."""
    config = smollm2_config(context_length=256, slots=request.param)
    provider = LlamaProvider(config, cache_dir=tmp_path_factory.mktemp("small-cache"))
    await provider.load()
    yield provider
    await provider.unload()


def counting_prompt(provider: LlamaProvider, max_tokens: int) -> tuple[Prompt, int]:
    """The longest "1, 2, 3, ..." prompt of at most `max_tokens` tokens, and its size."""
    best = (Prompt(text="1,"), provider.count_tokens(Prompt(text="1,")))
    for k in range(2, 1000):
        prompt = Prompt(text=", ".join(str(i) for i in range(1, k)) + ",")
        n = provider.count_tokens(prompt)
        if n > max_tokens:
            return best
        best = (prompt, n)
    raise AssertionError("unreachable")


@pytest.mark.slow
@module_loop
async def test_output_is_clamped_to_the_context(small: LlamaProvider) -> None:
    n_ctx = small.context_length
    assert n_ctx == 256
    prompt, n = counting_prompt(small, n_ctx - 5)
    pieces = await collect(small, prompt, DecodeParams(max_tokens=100, temperature=0.0))
    assert len(pieces) == n_ctx - n  # the model keeps counting; only the context stops it


@pytest.mark.slow
@module_loop
async def test_prompt_that_fills_the_context_fails(small: LlamaProvider) -> None:
    n_ctx = small.context_length
    prompt, n = counting_prompt(small, n_ctx + 3)
    assert n >= n_ctx
    with pytest.raises(ContextLengthExceeded):
        await collect(small, prompt, GREEDY)
    fits, n_fits = counting_prompt(small, n_ctx - 1)
    assert len(await collect(small, fits, DecodeParams(max_tokens=10, temperature=0.0))) == n_ctx - n_fits


# --- cancellation --------------------------------------------------------------------------


@pytest.mark.slow
@module_loop
async def test_cancel_token_stops_within_one_step(smol: LlamaProvider) -> None:
    cancel = CancelToken()
    got = after_cancel = 0
    steps_at_cancel = 0
    async for _ in smol.generate(RAMBLE, LONG, cancel):
        if cancel.cancelled:
            after_cancel += 1
        got += 1
        if got == 12:
            cancel.cancel(CancelReason.CLIENT_DISCONNECT)
            steps_at_cancel = smol.stats.steps
    # The stream ended at the cancel, and its slot was free within a step of it.
    assert got == 12 and after_cancel == 0
    assert not smol.busy
    assert smol.stats.steps - steps_at_cancel <= 1
    assert len(await collect(smol, RAINBOW, DecodeParams(max_tokens=3, temperature=0.0))) == 3


@pytest.mark.slow
@module_loop
async def test_aclose_frees_the_slot_before_it_returns(smol: LlamaProvider) -> None:
    streams = [smol.generate(RAMBLE, LONG, CancelToken()) for _ in range(smol.max_choices)]
    for stream in streams:
        await anext(stream)
    assert smol.stats.running == len(streams)
    *others, last = streams
    for stream in others:
        await stream.aclose()
    # The last one alone: no other sequence makes the engine step while it leaves.
    steps = smol.stats.steps
    await last.aclose()
    assert not smol.busy
    assert smol.stats.steps - steps <= 1  # at most the step under way when it closed


@pytest.mark.slow
@module_loop
async def test_task_cancellation_leaves_the_engine(smol: LlamaProvider) -> None:
    got: list[Piece] = []

    async def consume() -> None:
        async for piece in smol.generate(RAMBLE, LONG, CancelToken()):
            got.append(piece)

    task = asyncio.create_task(consume())
    await wait_for(lambda: len(got) >= 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not smol.busy


# --- structured output and logprobs ----------------------------------------------------------


@pytest.mark.slow
@module_loop
async def test_json_schema_output_validates(smol: LlamaProvider) -> None:
    prompt = Prompt(messages=(Message(role="user", content="Describe a person called Ada who is 36, as JSON."),))
    params = DecodeParams(
        max_tokens=80, temperature=0.0, response_format=ResponseFormat(type="json_schema", schema=PERSON_SCHEMA)
    )
    jsonschema.validate(json.loads(text_of(await collect(smol, prompt, params))), PERSON_SCHEMA)


@pytest.mark.slow
@module_loop
async def test_json_object_output_parses(smol: LlamaProvider) -> None:
    prompt = Prompt(messages=(Message(role="user", content="Give me a JSON object with a colour."),))
    params = DecodeParams(max_tokens=60, temperature=0.0, response_format=ResponseFormat(type="json_object"))
    assert isinstance(json.loads(text_of(await collect(smol, prompt, params))), dict)


@pytest.mark.slow
@module_loop
async def test_logprobs_shape(smol: LlamaProvider) -> None:
    pieces = await collect(smol, RAINBOW, DecodeParams(max_tokens=10, temperature=0.0, logprobs=True, top_logprobs=3))
    assert len(pieces) == 10
    for piece in pieces:
        entry = piece.logprob
        assert entry is not None
        assert entry.bytes == list(piece.data)
        assert entry.logprob <= 0.0
        assert len(entry.top_logprobs) == 3
        values = [top.logprob for top in entry.top_logprobs]
        assert values == sorted(values, reverse=True)
        assert sum(math.exp(v) for v in values) <= 1.0 + 1e-4
        # Greedy without penalties picks the most likely token.
        assert entry.top_logprobs[0].bytes == entry.bytes
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)


@pytest.mark.slow
@module_loop
async def test_logprobs_without_top_and_off(smol: LlamaProvider) -> None:
    with_lp = await collect(smol, RAINBOW, DecodeParams(max_tokens=3, temperature=0.0, logprobs=True))
    assert all(p.logprob is not None and p.logprob.top_logprobs == [] for p in with_lp)
    without = await collect(smol, RAINBOW, DecodeParams(max_tokens=3, temperature=0.0))
    assert all(p.logprob is None for p in without)
