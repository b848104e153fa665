"""The ``fmtune`` command: parses arguments and calls the application, one module per group of
commands. Heavy imports (TensorFlow, Keras Tuner) happen inside the commands."""

from __future__ import annotations

from typing import Annotated

import typer

from fmtune.cli import predict, results, serve, tune

app = typer.Typer(
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Tune, train and serve Keras image classifiers with distributed Keras Tuner.",
)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"fmtune {version('fmtune')}")
        raise typer.Exit()


@app.callback()
def _app(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="print the installed version and exit"),
    ] = False,
) -> None:
    """Tune, train and serve Keras image classifiers with distributed Keras Tuner."""


# In this order in --help.
app.command("config")(tune.show_config)
app.command("tune")(tune.tune)
app.command("dashboard")(results.dashboard_cmd)
app.command("coordinator")(tune.coordinator)
app.command("worker")(tune.worker)
app.command("deploy")(serve.deploy_cmd)
app.command("results")(results.results_cmd)
app.command("report")(results.report_cmd)
app.command("serve")(serve.serve)
app.command("predict")(predict.predict_cmd)


def main() -> None:
    app()
