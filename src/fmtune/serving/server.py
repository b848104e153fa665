"""``fmtune serve``: TF Serving itself when installed, otherwise the built-in server."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel, Field

from fmtune.serving import limits

log = logging.getLogger("fmtune")
TF_SERVING = "tensorflow_model_server"


class ServeOptions(BaseModel):
    """Where the model is and where to serve it."""

    model_repo: Path = Path("models")
    model_name: str = "fmtune"
    grpc_port: int = Field(default=8500, ge=0, lt=65536)
    rest_port: int = Field(default=8501, ge=0, lt=65536)
    host: str = "127.0.0.1"  # loopback unless told otherwise ("0.0.0.0" in a container)
    poll_seconds: float = Field(default=1.0, gt=0)
    # The built-in server's bounds (fmtune.serving.limits); tensorflow_model_server has its own.
    max_request_rows: int = Field(default=limits.MAX_REQUEST_ROWS, ge=1)
    max_queued_mib: int = Field(default=limits.MAX_QUEUED_BYTES >> 20, ge=1)
    max_concurrent_rpcs: int = Field(default=limits.MAX_CONCURRENT_RPCS, ge=1)

    @property
    def base_path(self) -> Path:
        return self.model_repo / self.model_name


def monitoring_config(folder: Path) -> Path:
    """TF Serving's ``--monitoring_config_file``, written in ``folder``: its Prometheus metrics on
    the REST port at the built-in server's path (the chart's ConfigMap says the same)."""
    from fmtune.serving.metrics import PATH

    path = folder / "monitoring_config.txt"
    path.write_text(f'prometheus_config {{\n  enable: true\n  path: "{PATH}"\n}}\n')
    return path


def tf_serving_argv(binary: str, opts: ServeOptions, monitoring: Path) -> list[str]:
    return [
        binary,
        f"--port={opts.grpc_port}",
        f"--rest_api_port={opts.rest_port}",
        f"--model_name={opts.model_name}",
        f"--model_base_path={opts.base_path.resolve()}",
        f"--file_system_poll_wait_seconds={max(1, round(opts.poll_seconds))}",
        f"--monitoring_config_file={monitoring}",
    ]


class BuiltinServer:
    """Both APIs over one model manager; ``close()`` stops everything."""

    def __init__(self, opts: ServeOptions):
        from fmtune.serving import grpc_api, rest_api, warmup
        from fmtune.serving.metrics import ServingMetrics
        from fmtune.serving.models import ModelManager, Servable
        from fmtune.serving.runner import Runner

        self.metrics = ServingMetrics()  # both APIs' requests, on the REST port's metrics page

        def model_call(rows: int, seconds: float) -> None:
            self.metrics.model_call(opts.model_name, "Predict", rows, seconds)

        self.runner = Runner(
            max_request_rows=opts.max_request_rows,
            max_queued_bytes=opts.max_queued_mib << 20,
            on_model_call=model_call,
        )

        def warm(servable: Servable) -> None:
            warmup.replay(servable, self.runner)

        self.manager = ModelManager(opts.base_path, opts.model_name, opts.poll_seconds, warmup=warm)
        self.manager.start()
        self.grpc = grpc_api.start(
            self.manager,
            self.runner,
            f"{opts.host}:{opts.grpc_port}",
            max_concurrent_rpcs=opts.max_concurrent_rpcs,
            metrics=self.metrics,
        )
        self.rest = rest_api.start(self.manager, self.runner, opts.host, opts.rest_port, metrics=self.metrics)

    def close(self) -> None:
        self.rest.shutdown()
        self.rest.server_close()
        self.grpc.stop(grace=1)
        self.runner.stop()
        self.manager.stop()


def serve(opts: ServeOptions, builtin: bool = False) -> None:
    binary = None if builtin else shutil.which(TF_SERVING)
    if binary:
        # A private folder of its own, left behind: the server replaces this process.
        argv = tf_serving_argv(binary, opts, monitoring_config(Path(tempfile.mkdtemp(prefix="fmtune-serve-"))))
        log.info("running %s", " ".join(argv))
        os.execv(binary, argv)
    server = BuiltinServer(opts)
    log.info(
        "built-in server for %s (%s): gRPC on %s:%d, REST on %s:%d",
        opts.model_name,
        opts.base_path,
        opts.host,
        opts.grpc_port,
        opts.host,
        opts.rest_port,
    )
    # The handler only sets a flag: it can run again inside itself (make passes a Ctrl-C or a
    # SIGTERM on to the child that already got it), and anything taking a lock there deadlocks.
    stopping: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, _: stopping.append(number))
    while not stopping:
        time.sleep(0.2)
    log.info("stopping")
    server.close()
