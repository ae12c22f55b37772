"""deploy/serve.yaml is a config Ray Serve accepts, and its args are LearningAppArgs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from olsim.deploy.serve_config import LearningAppArgs

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "serve.yaml"


def test_serve_yaml_passes_serves_own_schema() -> None:
    from ray.serve.schema import ServeDeploySchema

    raw = yaml.safe_load(CONFIG.read_text())
    config = ServeDeploySchema.model_validate(raw)
    (app,) = config.applications
    assert app.import_path == "olsim.deploy.serve_config:build"
    assert config.http_options.host == "127.0.0.1"
    args = LearningAppArgs.model_validate(app.args)
    assert args.load().learner.strategy.kind == "replay"
    (dep,) = app.deployments
    assert dep.name == "Predictor" and dep.num_replicas == 2 and dep.max_queued_requests == 64


def test_app_args_are_typed_and_strict(tmp_path: Path) -> None:
    args = LearningAppArgs(strategy="ewc", seed=3, state_dir=str(tmp_path))
    s = args.load()
    assert (s.learner.strategy.kind, s.seed) == ("ewc", 3) and args.state() == tmp_path.resolve()
    assert LearningAppArgs(name="x").state().name == "x"
    with pytest.raises(ValidationError, match="extra"):
        LearningAppArgs.model_validate({"scenaro": "split-digits"})
    with pytest.raises(ValidationError):
        LearningAppArgs(metrics_port=70000)


def test_stop_command_usage(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from olsim.deploy.serve_config import main

    monkeypatch.setattr("sys.argv", ["olsim.deploy.serve_config", "start"])
    assert main() == 2
    assert "usage: python -m olsim.deploy.serve_config stop [NAME]" in capsys.readouterr().err
