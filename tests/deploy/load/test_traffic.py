"""What the load tools send: /predict rows for a classifier, the held-out questions to /generate for
a language model, each body valid for its route's schema."""

from __future__ import annotations

from olsim.deploy.load.session import held_out_requests
from olsim.serving.schemas import GenerateRequest, PredictRequest


def test_a_classifier_scenario_sends_rows_to_predict() -> None:
    t = held_out_requests("split-digits")
    assert t.path == "/predict" and len(t.bodies) == 360
    assert all(len(PredictRequest.model_validate(b).inputs[0]) == 64 for b in t.bodies)


def test_the_facts_scenario_asks_its_held_out_questions() -> None:
    t = held_out_requests("facts")
    assert t.path == "/generate" and t.response.__name__ == "GenerateResponse"
    bodies = [GenerateRequest.model_validate(b) for b in t.bodies]
    assert all(b.stop == "." and b.prompt.endswith(" ") and 2 <= b.max_new_tokens <= 16 for b in bodies)
    assert any(b.prompt.endswith(" lives in ") for b in bodies) and any(
        " works as a " in b.prompt for b in bodies
    )
