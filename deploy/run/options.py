"""What one ``olsim run`` is asked to do (:class:`RunOptions`) and the admin token it guards with."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from olsim.deploy.errors import UserError
from olsim.serving.auth import MIN_TOKEN_LENGTH, check_token

log = logging.getLogger(__name__)

TOKEN_ENV = "OLSIM_ADMIN_TOKEN"


class RunOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    duration_s: float | None = Field(None, gt=0, description="stop the stream after this many seconds")
    report_dir: Path = Field(Path("out"), description="where report.json, the report page and plots go")
    address: str | None = Field(None, description="a Ray cluster to join instead of starting a local one")
    metrics_host: str = Field("127.0.0.1", description="host of olsim's Prometheus scrape endpoint")
    metrics_port: int = Field(9464, ge=0, le=65535, description="port of olsim's Prometheus scrape endpoint")
    ray_metrics_port: int = Field(
        8090, ge=0, le=65535, description="Ray's metrics export port when olsim starts Ray (0: Ray picks)"
    )
    prometheus: bool = Field(
        False,
        description="start a Prometheus server (the `prometheus` binary) scraping this run, data in "
        "DIR/prometheus",
    )
    prometheus_port: int = Field(9090, ge=1, le=65535, description="its port on 127.0.0.1")
    scrape_interval_s: float = Field(5.0, ge=0.5, le=60, description="Prometheus scrape interval, seconds")
    load_rps: float = Field(
        20.0, ge=0, description="/predict requests per second while the run lasts; 0 = none"
    )
    settle_timeout_s: float = Field(
        30.0, gt=0, description="wait this long for replicas to serve the last version"
    )
    stall_timeout_s: float = Field(120.0, gt=0, description="fail if the learner makes no progress this long")
    ray_logs: bool = Field(
        False,
        description="show Ray's own logs (start-up, Serve, actors) here, not only in Ray's log files",
    )
    admin_token: str | None = Field(
        None,
        min_length=MIN_TOKEN_LENGTH,
        repr=False,
        description=f"bearer token for /admin routes (default ${TOKEN_ENV}, else new in DIR/admin-token)",
    )


class RunError(UserError, RuntimeError):
    """A run could not start or did not finish; the message is one line meant for users."""


def write_token(path: Path, token: str) -> None:
    """Write ``token`` to a new file at ``path``, mode 0600. A file an earlier run left there is
    replaced by a new one (its mode is never reused); a symlink there is refused, never followed."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        if path.is_symlink() or not path.is_file():
            raise RunError(f"refusing to write the admin token to {path}: it is not a regular file") from None
        path.unlink()  # an earlier run's token
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:  # something put it back in between: refuse
            raise RunError(f"refusing to write the admin token to {path}: it reappeared") from None
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")


def resolve_token(opts: RunOptions) -> tuple[str, Path | None]:
    """The admin bearer token: the option, else $OLSIM_ADMIN_TOKEN (at least 16 characters), else a
    fresh one written to a new ``report_dir/admin-token`` (mode 0600, path returned) so a user of
    this run can read it."""
    if opts.admin_token:
        return opts.admin_token, None
    env = os.environ.get(TOKEN_ENV)
    if env:
        try:
            return check_token(env, f"${TOKEN_ENV}"), None
        except ValueError as exc:
            raise RunError(str(exc)) from None
    token = secrets.token_urlsafe(24)
    opts.report_dir.mkdir(parents=True, exist_ok=True)
    path = opts.report_dir / "admin-token"
    write_token(path, token)
    log.info("admin token written to %s", path)
    return token, path
