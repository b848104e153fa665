"""``fmtune serve``: TF Serving itself when installed, otherwise the built-in server."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
from pathlib import Path

log = logging.getLogger("fmtune")
TF_SERVING = "tensorflow_model_server"


def tf_serving_argv(
    binary: str, model_repo: Path, model_name: str, grpc_port: int, rest_port: int, poll_seconds: float
) -> list[str]:
    return [
        binary,
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        f"--model_name={model_name}",
        f"--model_base_path={(model_repo / model_name).resolve()}",
        f"--file_system_poll_wait_seconds={max(1, round(poll_seconds))}",
    ]


class BuiltinServer:
    """Both APIs over one model manager; ``close()`` stops everything."""

    def __init__(
        self,
        model_repo: Path,
        model_name: str,
        grpc_port: int,
        rest_port: int,
        host: str = "0.0.0.0",
        poll_seconds: float = 1.0,
    ):
        from fmtune.serving import grpc_api, rest_api
        from fmtune.serving.models import ModelManager

        self.manager = ModelManager(model_repo / model_name, model_name, poll_seconds)
        self.manager.start()
        self.grpc = grpc_api.start(self.manager, f"{host}:{grpc_port}")
        self.rest = rest_api.start(self.manager, host, rest_port)

    def close(self) -> None:
        self.rest.shutdown()
        self.rest.server_close()
        self.grpc.stop(grace=1)
        self.manager.stop()


def serve(
    model_repo: Path,
    model_name: str,
    grpc_port: int,
    rest_port: int,
    host: str = "0.0.0.0",
    poll_seconds: float = 1.0,
    builtin: bool = False,
) -> None:
    binary = None if builtin else shutil.which(TF_SERVING)
    if binary:
        argv = tf_serving_argv(binary, model_repo, model_name, grpc_port, rest_port, poll_seconds)
        log.info("running %s", " ".join(argv))
        os.execv(binary, argv)
    server = BuiltinServer(model_repo, model_name, grpc_port, rest_port, host, poll_seconds)
    log.info(
        "built-in server for %s (%s): gRPC on %s:%d, REST on %s:%d",
        model_name,
        model_repo / model_name,
        host,
        grpc_port,
        host,
        rest_port,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("stopping")
    server.close()
