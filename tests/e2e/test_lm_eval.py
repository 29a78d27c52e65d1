"""lm-eval as its users run it: `lm_eval --model local-completions` against the served
embedded default, with its default tokenizer (which finds the gateway's `/tokenizer_info`
and `/tokenize` and uses them), on a tiny offline multiple-choice task
(tests/data/lm_eval/). Each choice's log-likelihood must equal the one computed directly
with llama-cpp-python on the same GGUF, to 1e-3."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import llama_cpp
import pytest

from tests.e2e.test_completions import _smol_path
from tests.support.clients import client_command
from tests.support.reference_logprobs import plain_prompt_logprobs
from tests.support.served import REPO, ServedGateway

pytestmark = pytest.mark.slow

TASK = "mia_tiny_mc"


def _reference(pairs: list[tuple[str, str]]) -> list[float]:
    """Each (context, continuation)'s log-likelihood as lm-eval defines it (the continuation's
    tokens are those of context + continuation after the context's), computed directly."""
    vocab = llama_cpp.Llama(model_path=str(_smol_path()), vocab_only=True, verbose=False)
    try:
        wholes, starts = [], []
        for context, continuation in pairs:
            whole = vocab.tokenize((context + continuation).encode(), add_bos=False, special=True)
            starts.append(len(vocab.tokenize(context.encode(), add_bos=False, special=True)))
            wholes.append(whole)
    finally:
        vocab.close()
    values = plain_prompt_logprobs(_smol_path(), wholes)
    # values[i][k] is the logprob of token k + 1
    return [sum(v[start - 1 :]) for v, start in zip(values, starts, strict=True)]


def test_lm_eval_scores_choices_as_llama_cpp_python_does(default_gateway: ServedGateway, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {
        **os.environ,
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "OPENAI_API_KEY": "unused",
    }
    args = [
        str(client_command("lm_eval", "lm_eval")),
        "--model",
        "local-completions",
        "--model_args",
        f"model=smollm2-135m-instruct,base_url={default_gateway.api_url}/completions,num_concurrent=1,max_retries=1",
        "--tasks",
        TASK,
        "--include_path",
        "tests/data/lm_eval",
        "--log_samples",
        "--output_path",
        str(out),
    ]
    run = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Using remote tokenizer" in run.stderr + run.stdout  # its default found the gateway's
    [samples_file] = out.glob(f"*/samples_{TASK}_*.jsonl")
    samples = [json.loads(line) for line in samples_file.read_text().splitlines()]
    assert len(samples) == 6
    pairs, got, answers, counts = [], [], [], []
    for sample in samples:
        args_ = [sample["arguments"][f"gen_args_{i}"] for i in range(len(sample["arguments"]))]
        pairs += [(a["arg_0"], a["arg_1"]) for a in args_]
        got += [float(r[0][0]) for r in sample["resps"]]
        answers.append(sample["doc"]["answer"])
        counts.append(len(args_))
    expected = _reference(pairs)
    assert got == pytest.approx(expected, abs=1e-3)
    # and so the score: the share of documents whose answer is the likeliest choice
    at, right = 0, 0
    for answer, n in zip(answers, counts, strict=True):
        scores = expected[at : at + n]
        right += scores.index(max(scores)) == answer
        at += n
    [results_file] = out.glob("*/results_*.json")
    results = json.loads(results_file.read_text())["results"][TASK]
    assert results["acc,none"] == pytest.approx(right / len(answers))
