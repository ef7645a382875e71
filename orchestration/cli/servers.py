"""The long-running commands: the Dagster webserver (alone, or with the daemon) and the MLflow UI."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from pathlib import Path

from orchestration.cli.common import config_from_args, prepare_dagster_home
from orchestration.config import redact_uri


def _exec_server(exe: str, argv: list[str]) -> None:
    """Replace this process by a server that a SIGTERM stops. A shell starting a command in the
    background (``sluice serve &`` in a script, a CI job) sets SIGINT to ignored, and the ignoring is
    inherited across exec; ``dagster dev`` handles SIGTERM with SIGINT's handler, so it then ignored
    SIGTERM too and a service manager's stop waited for its kill timeout."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.execv(exe, [exe, *argv])


def cmd_ui(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    prepare_dagster_home(cfg)
    exe = shutil.which("dagster-webserver", path=str(Path(sys.executable).parent)) or "dagster-webserver"
    port = str(args.port or cfg.dagster.ui_port)
    os.environ["SLUICE_DAGSTER__DAEMON"] = "false"  # the sensors show as stopped, and say why
    print(
        f"Dagster UI on http://127.0.0.1:{port} (instance {cfg.dagster_home}). This is the webserver alone: sensors and "
        "automation do not run here; `sluice serve` runs them (webserver and daemon).",
        file=sys.stderr,
    )
    _exec_server(exe, ["-h", "127.0.0.1", "-p", port, "-m", "orchestration.definitions"])
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The Dagster webserver and daemon together (``dagster dev``) on the project's instance: leave it
    running, drop crawl folders into the landing folder, watch them flow through the UI."""
    cfg = config_from_args(args, **({"landing_dir": Path(args.landing).resolve()} if args.landing else {}))
    os.environ["SLUICE_LANDING_DIR"] = str(Path(cfg.landing_dir).resolve())
    Path(cfg.landing_dir).mkdir(parents=True, exist_ok=True)
    home = prepare_dagster_home(cfg)
    os.environ["SLUICE_DAGSTER__DAEMON"] = "true"
    exe = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
    port = str(args.port or cfg.dagster.ui_port)
    print(
        f"Dagster webserver and daemon on http://127.0.0.1:{port} (instance {home}); watching {Path(cfg.landing_dir).resolve()} "
        f"for crawl folders",
        file=sys.stderr,
    )
    _exec_server(exe, ["dev", "-h", "127.0.0.1", "-p", port, "-m", "orchestration.definitions"])
    return 0


def cmd_mlflow_ui(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    port = str(args.port or cfg.mlflow.ui_port)
    print(f"MLflow UI on http://127.0.0.1:{port} ({redact_uri(cfg.mlflow_tracking_uri)})", file=sys.stderr)
    os.environ["MLFLOW_BACKEND_STORE_URI"] = cfg.mlflow_tracking_uri  # not in argv, where `ps` would show a password
    _exec_server(exe, ["ui", "--default-artifact-root", cfg.mlflow_artifact_root, "-h", "127.0.0.1", "-p", port])
    return 0
