"""``POST /generate`` on real Serve replicas serving the byte transformer: answers are greedy decoding
by the version the response names, even when a swap lands mid-generation; limits and misuse get a
422 with a message; requests generated from the OpenAPI schema never get a 5xx."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import torch

from conftest import deployed, fuzz_schema
from olsim.deploy.run.cluster import get, wait_until
from olsim.deploy.run.stack import ServingStack
from olsim.deploy.scenario.plugins import resolve
from olsim.deploy.scenario.spec import Scenario, load_scenario
from olsim.learner.model import build_model
from olsim.learner.snapshot import Snapshot

PREFIX = "/lm"
URL = f"http://127.0.0.1:8000{PREFIX}"
LONG = 500  # new tokens in the generation a swap lands in: over a second on one CPU thread


def _scenario() -> Scenario:
    data = load_scenario("facts").dump()
    data["stream"]["tasks"]["args"] = {"periods": 2, "entities_per_period": 5, "changes_per_period": 1}
    # a model slow enough per token that a generation of LONG tokens outlasts a swap: past its short
    # context every step reads the whole window again (the KV cache only serves the first 54 bytes)
    data["learner"]["model"] = {"kind": "transformer", "layers": 4, "heads": 4, "width": 192, "context": 64}
    data["serving"] = {"replicas": 1, "max_new_tokens": 500, "max_prompt_bytes": 64}
    return resolve(Scenario.model_validate(data))


SCENARIO = _scenario()


def _snapshot(seed: int) -> Snapshot:
    """A version of its own: an untrained transformer repeats one byte, so each seed's is pushed
    towards a byte of its own (the final norm's bias along that byte's embedding)."""
    net: Any = build_model(SCENARIO.learner.model, seed=seed)
    with torch.no_grad():
        favour = net.embed_tokens.weight[ord("a") + seed % 26]
        net.norm.bias.copy_(40.0 * favour / favour.norm())
    return Snapshot.from_model(net, task=0, step=seed)


@functools.cache
def _offline(seed: int, prompt: str, n: int) -> str:
    """What version ``_snapshot(seed)`` generates, decoded here in the test process."""
    ids = _snapshot(seed).build().generate(list(prompt.encode()), n)
    return bytes(ids).decode(errors="replace")


@pytest.fixture(scope="module")
def stack(ray_cluster: None) -> Iterator[ServingStack]:
    with deployed(SCENARIO, _snapshot(1), app_name="lm", route_prefix=PREFIX) as st:
        yield st


def test_a_generation_is_the_named_versions_greedy_decoding(stack: ServingStack) -> None:
    r = httpx.post(f"{URL}/generate", json={"prompt": "Kovalo lives in ", "max_new_tokens": 12}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == 1 and body["tokens"] == 12 and body["stopped"] is False
    assert body["text"] == _offline(1, "Kovalo lives in ", 12)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"prompt": "x" * 65}, "65 bytes; at most 64 allowed"),
        ({"prompt": "é" * 33}, "66 bytes; at most 64 allowed"),  # bytes, not characters
        ({"prompt": "a", "max_new_tokens": 501}, "501 tokens; at most 500 allowed"),
        ({"prompt": "a\u0000b"}, "must not contain NUL bytes"),
        ({"prompt": "a", "stop": "é"}, "one byte in UTF-8"),
        ({"prompt": ""}, "at least 1 character"),
        ({"prompt": "a", "max_new_tokens": 0}, "greater than or equal to 1"),
        ({"prompt": "a", "tokens": 3}, "Extra inputs are not permitted"),
    ],
)
def test_bad_generate_requests_get_422_with_a_message(stack: ServingStack, body: dict, says: str) -> None:
    r = httpx.post(f"{URL}/generate", json=body, timeout=30)
    assert r.status_code == 422 and says in r.json()["detail"], r.text


def test_predict_on_a_language_model_says_where_to_go(stack: ServingStack) -> None:
    r = httpx.post(
        f"{URL}/predict", json={"inputs": [[1.0] * SCENARIO.learner.model.in_features]}, timeout=30
    )
    assert r.status_code == 422 and "POST /generate" in r.json()["detail"]


def test_a_swap_mid_generation_does_not_mix_versions(stack: ServingStack) -> None:
    assert get(stack.registry.state.remote())["served"] == 1  # _snapshot(1), deployed by the fixture
    old, new = 1, 2  # seeds of the served version and of the next
    prompt = "The world "
    assert _offline(old, prompt, LONG) != _offline(new, prompt, LONG)  # the two versions are told apart
    got: dict[str, Any] = {}

    def ask() -> None:
        got["r"] = httpx.post(f"{URL}/generate", json={"prompt": prompt, "max_new_tokens": LONG}, timeout=60)
        got["done"] = time.monotonic()

    t = threading.Thread(target=ask)
    t.start()
    time.sleep(0.2)  # the generation is under way
    published = get(stack.registry.publish.remote(_snapshot(new))).version
    assert wait_until(stack.replicas_current, 30, "the swap")
    swapped = time.monotonic()
    t.join(60)
    body = got["r"].json()
    assert got["done"] > swapped, "the generation ended before the swap: nothing was tested"
    assert body["model_version"] == 1 and body["text"] == _offline(old, prompt, LONG)
    after = httpx.post(f"{URL}/generate", json={"prompt": prompt, "max_new_tokens": 20}, timeout=30).json()
    assert after["model_version"] == published and after["text"] == _offline(new, prompt, 20)


def test_generated_requests_never_get_a_5xx(stack: ServingStack) -> None:
    seen = fuzz_schema(URL, 60, paths={"/generate"})
    statuses = {int(k.split()[-1]): n for k, n in seen.items()}
    assert statuses.get(200, 0) >= 1 and sum(n for s, n in statuses.items() if 400 <= s < 500) >= 10, seen
    assert httpx.get(f"{URL}/healthz", timeout=10).json()["status"] == "ok"
