"""What every command shares: the configuration from the arguments, and the Dagster instance folder."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from orchestration.config import SluiceConfig, load_config

DAGSTER_YAML = """# Written by sluice: a local instance with its storage in this folder.
telemetry:
  enabled: false
# No first-visit "Join the Dagster community" dialog in the UI.
nux:
  enabled: false
"""


def config_from_args(args: argparse.Namespace, **extra) -> SluiceConfig:
    overrides = {"lakehouse_dir": getattr(args, "lakehouse", None), **extra}
    try:
        cfg = load_config(getattr(args, "config", None), **overrides)
    except ValidationError as e:
        # A wrong or renamed key is the user's to fix: say which, and where, without a traceback.
        where = getattr(args, "config", None) or os.environ.get("SLUICE_CONFIG") or "the defaults and SLUICE_ environment"
        problems = "\n".join(f"  {'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in e.errors())
        print(f"sluice {getattr(args, 'command', '')}: the configuration ({where}) is not valid:\n{problems}", file=sys.stderr)
        raise SystemExit(2) from None
    # Child processes (webserver, Spark workers) read the same settings from the environment.
    os.environ["SLUICE_LAKEHOUSE_DIR"] = str(cfg.lakehouse_path)
    os.environ["SLUICE_LANDING_DIR"] = str(Path(cfg.landing_dir).resolve())
    return cfg


def prepare_dagster_home(cfg: SluiceConfig) -> Path:
    home = cfg.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    yaml = home / "dagster.yaml"
    if not yaml.exists():
        yaml.write_text(DAGSTER_YAML)
    elif yaml.read_text().startswith("# Written by sluice") and "nux:" not in yaml.read_text():
        yaml.write_text(DAGSTER_YAML)  # an instance made by an earlier version: same settings, plus nux
    os.environ["DAGSTER_HOME"] = str(home)
    return home
