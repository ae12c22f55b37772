"""The typed report: the published JSON schema is current, and load_report reads reports back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from olsim.deploy.errors import UserError
from olsim.deploy.report.model import SCHEMA, RunReport, load_report, schema_text


def test_the_published_schema_is_current() -> None:
    stale = "stale docs/report.schema.json: run `python -m olsim.deploy.report.model`"
    assert SCHEMA.read_text() == schema_text(), stale
    schema = json.loads(SCHEMA.read_text())
    assert schema["title"] == "RunReport" and "accuracy_matrix" in schema["required"]
    assert schema["additionalProperties"] is False  # a new report key must be added to the model


def test_load_report_names_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text(json.dumps({"scenario": "x"}))
    with pytest.raises(UserError, match=r"is not an olsim report: strategy: Field required"):
        load_report(tmp_path)
    with pytest.raises(UserError, match="not found"):
        load_report(tmp_path / "nope")
    (tmp_path / "report.json").write_text("{")
    with pytest.raises(UserError, match="is not an olsim report"):
        load_report(tmp_path / "report.json")


def test_unknown_top_level_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        RunReport.model_validate({"nope": 1})
