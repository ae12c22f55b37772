from __future__ import annotations

import pytest
from pydantic import ValidationError

from olsim.serving.schemas import PredictRequest


def test_accepts_ints_and_floats() -> None:
    req = PredictRequest.model_validate_json('{"inputs": [[1, 0.5]], "task": 2}')
    assert req.inputs == [[1.0, 0.5]] and req.task == 2


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('{"inputs": []}', "at least 1 item"),
        ('{"inputs": [[]]}', "at least 1 item"),
        ('{"inputs": [["1.0"]]}', "valid number"),
        ('{"inputs": [[true]]}', "valid number"),
        ('{"inputs": [[NaN]]}', "finite number"),
        ('{"inputs": [[Infinity]]}', "finite number"),
        ('{"inputs": [[1.0]], "task": -1}', "greater than or equal"),
        ('{"inputs": [[1.0]], "extra": 1}', "Extra inputs"),
        ("{}", "Field required"),
    ],
)
def test_rejects_bad_input_with_a_message(body: str, needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        PredictRequest.model_validate_json(body)
