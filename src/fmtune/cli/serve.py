"""The commands around a served model: ``serve`` it, and ``deploy`` an exported version to it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fmtune.cli.common import fail, setup_logging
from fmtune.serving import limits


def serve(
    model_repo: Annotated[Path, typer.Option(help="model repository (holds <model-name>/<version>/)")] = Path("models"),
    model_name: Annotated[str, typer.Option(help="model to serve")] = "fmtune",
    grpc_port: Annotated[int, typer.Option(help="gRPC port")] = 8500,
    rest_port: Annotated[int, typer.Option(help="REST port")] = 8501,
    host: Annotated[str, typer.Option(help="bind address (0.0.0.0 in a container)")] = "127.0.0.1",
    poll_seconds: Annotated[float, typer.Option(help="how often to look for new versions")] = 1.0,
    builtin: Annotated[bool, typer.Option("--builtin", help="never use tensorflow_model_server")] = False,
    max_request_rows: Annotated[
        int, typer.Option(min=1, help="built-in server: rows (images) one predict may ask for")
    ] = limits.MAX_REQUEST_ROWS,
    max_queued_mib: Annotated[
        int, typer.Option(min=1, help="built-in server: MiB of inputs waiting or running before predicts are refused")
    ] = limits.MAX_QUEUED_BYTES >> 20,
    max_concurrent_rpcs: Annotated[
        int, typer.Option(min=1, help="built-in server: gRPC calls in progress at once")
    ] = limits.MAX_CONCURRENT_RPCS,
) -> None:
    """Serve the model over TF Serving's gRPC and REST APIs (tensorflow_model_server if on PATH)."""
    setup_logging()
    from fmtune.serving.server import ServeOptions
    from fmtune.serving.server import serve as run_server

    opts = ServeOptions(
        model_repo=model_repo,
        model_name=model_name,
        grpc_port=grpc_port,
        rest_port=rest_port,
        host=host,
        poll_seconds=poll_seconds,
        max_request_rows=max_request_rows,
        max_queued_mib=max_queued_mib,
        max_concurrent_rpcs=max_concurrent_rpcs,
    )
    try:
        run_server(opts, builtin)
    except OSError as exc:
        fail(str(exc))


def deploy_cmd(
    version_dir: Annotated[Path, typer.Argument(help="an exported version (SavedModel + fmtune.json)")],
    deploy_config: Annotated[Path, typer.Option("--deploy-config", help="deploy.yaml (the chart's ConfigMap)")],
    model_repo: Annotated[Path, typer.Option(help="the repository the serving pods watch")] = Path("/data/models"),
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="FMTUNE_DATA_DIR",
            help="where the model's dataset is, for test images to smoke-test with (else random images)",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="deploy even if worse than the served model")] = False,
) -> None:
    """Deploy an exported model to the TF Serving Deployment (gate, publish, verify, record)."""
    setup_logging()
    from fmtune.deploy import DeployConfig, DeployError
    from fmtune.redeploy import deploy_exported

    try:
        record = deploy_exported(version_dir, DeployConfig.load(deploy_config), model_repo, data_dir, force)
    except DeployError as exc:
        fail(str(exc))
    print(record.model_dump_json(indent=2))
