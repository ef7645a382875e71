"""The one typed configuration of Sluice.

Precedence, highest first: explicit overrides (CLI flags) > environment (``SLUICE_...``, nested with
``__``, e.g. ``SLUICE_SPARK__MASTER=spark://host:7077``) > the YAML file (``--config`` or
``SLUICE_CONFIG``) > the embedded defaults below, which run on a laptop.

Stage parameters are defined next to the code that uses them (``documents``, ``spark_jobs``,
``gpu_jobs``), so the jobs stay importable without Dagster; this module only composes them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from documents.decontam import DecontamOptions
from documents.minhash import DedupOptions
from documents.mixture import MixingOptions
from documents.rules import FilterOptions
from gpu_jobs.launch import GpuLaunchSettings
from gpu_jobs.options import ClassifierTraining, RewriteOptions, ScoringOptions
from spark_jobs.session import SparkSettings
from storage import tables as T
from storage.warc import IngestOptions

CONFIG_ENV = "SLUICE_CONFIG"


class MlflowSettings(BaseModel):
    """Where lineage goes. Empty tracking_uri means a SQLite store inside the lakehouse folder."""

    tracking_uri: str = ""
    experiment: str = "sluice"
    ui_port: int = 5000


class DagsterSettings(BaseModel):
    """Local Dagster instance; empty home means ``<lakehouse>/_dagster``."""

    home: str = ""
    ui_port: int = 3000
    # How often the landing sensor looks for new crawl folders.
    sensor_interval_seconds: int = 60
    # When every configured mixture is rebuilt from the current decontaminated tables (cron, UTC).
    mixture_cron: str = "0 3 * * *"
    # Retries of a failed step (a lost Spark executor, an inference server timing out), with
    # exponential backoff from this delay.
    retries: int = 2
    retry_delay_seconds: float = 30.0
    # Whether a Dagster daemon runs the sensors (``sluice serve``: yes). ``sluice ui`` is the webserver
    # alone and sets it false, so that the UI shows the sensors stopped and says what runs them.
    daemon: bool = True


class QualitySettings(BaseModel):
    """Gate behaviour. Results (JSON, Data Docs) land in ``<lakehouse>/_quality``."""

    preview_rows: int = 5
    # quality_classifier's gate, measured on crawl documents the classifier did not train on: the
    # ROC-AUC against hand labels when given (classifier.validation_labels_path), else the ROC-AUC
    # of agreement with the signals score's top and bottom 30% (see quality/suites.py).
    min_classifier_auc: float = 0.7
    min_classifier_agreement: float = 0.6


class LakehouseSettings(BaseModel):
    """Delta commit behaviour."""

    # A stray file left by a killed writer is deleted only when no live writer holds its lock;
    # the grace period is a second guard for shared file systems where locks are unreliable.
    stray_grace_seconds: float = 0.0


_SYSTEM_DIRS = frozenset(
    {
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/home",
        "/lib",
        "/lib64",
        "/opt",
        "/proc",
        "/root",
        "/sbin",
        "/srv",
        "/sys",
        "/tmp",
        "/usr",
        "/var",
        "/mnt",
        "/media",
    }
)


class SluiceConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLUICE_", env_nested_delimiter="__", extra="forbid", validate_default=True)

    lakehouse_dir: Path = Path("lakehouse")
    landing_dir: Path = Path("landing")
    # A crawl folder is picked up by the sensor once its files have been still this long.
    landing_settle_seconds: float = 30.0
    spark: SparkSettings = Field(default_factory=SparkSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    dagster: DagsterSettings = Field(default_factory=DagsterSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    lakehouse: LakehouseSettings = Field(default_factory=LakehouseSettings)
    ingest: IngestOptions = Field(default_factory=IngestOptions)
    filter: FilterOptions = Field(default_factory=FilterOptions)
    dedup: DedupOptions = Field(default_factory=DedupOptions)
    classifier: ClassifierTraining = Field(default_factory=ClassifierTraining)
    scoring: ScoringOptions = Field(default_factory=ScoringOptions)
    rewrite: RewriteOptions = Field(default_factory=RewriteOptions)
    decontamination: DecontamOptions = Field(default_factory=DecontamOptions)
    mixing: MixingOptions = Field(default_factory=MixingOptions)
    gpu: GpuLaunchSettings = Field(default_factory=GpuLaunchSettings)

    @field_validator("lakehouse_dir", "landing_dir", mode="before")
    @classmethod
    def _local_folder(cls, v: object) -> object:
        if isinstance(v, str) and "://" in v:
            raise ValueError(
                f"{v!r}: the lakehouse and landing folders are local (or mounted) paths; object storage URIs "
                "are not supported yet (Spark here has no S3 connector; see infra/README.md)"
            )
        return v

    @model_validator(mode="after")
    def _safe_folders(self) -> SluiceConfig:
        """Refuse folders whose misuse would be destructive: a takedown rewrites files under the
        lakehouse and the Dagster home, and stray cleanup deletes files in the tables' folders.
        (A lakehouse inside the landing folder is fine: crawl folders are those with WARC files.)"""
        named = {"lakehouse_dir": self.lakehouse_path, "landing_dir": Path(self.landing_dir).expanduser().resolve()}
        if self.dagster.home:
            named["dagster.home"] = Path(self.dagster.home).expanduser().resolve()
        for name, p in named.items():
            if p == Path(p.anchor) or p == Path.home() or str(p) in _SYSTEM_DIRS:
                raise ValueError(f"{name} is {p}: refusing a system or home folder (Sluice writes, rewrites and deletes files there)")
        lake, landing = named["lakehouse_dir"], named["landing_dir"]
        if lake == landing or lake in landing.parents:  # a takedown would rewrite the crawls' own WARC files
            raise ValueError(f"landing_dir ({landing}) must not be the lakehouse_dir ({lake}) or inside it")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))

    # ---- derived locations -------------------------------------------------------------------
    @property
    def lakehouse_path(self) -> Path:
        return self.lakehouse_dir.expanduser().resolve()

    @property
    def mlflow_tracking_uri(self) -> str:
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        return f"sqlite:///{self.lakehouse_path / T.MLFLOW / 'mlflow.db'}"

    @property
    def mlflow_artifact_root(self) -> str:
        return (self.lakehouse_path / T.MLFLOW / "artifacts").as_uri()

    @property
    def dagster_home(self) -> Path:
        return Path(self.dagster.home).resolve() if self.dagster.home else self.lakehouse_path / T.DAGSTER

    @property
    def quality_dir(self) -> Path:
        return self.lakehouse_path / T.QUALITY

    def table_uri(self, name: str) -> str:
        return str(self.lakehouse_path / name)


def redact_uri(uri: str) -> str:
    """A URI as it may be printed or logged: a password in it becomes ``***``."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc or ":" not in parts.netloc.rsplit("@", 1)[0]:
        return uri
    userinfo, host = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{host}"))


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by ``SLUICE_CONFIG`` (set by ``--config``)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get(CONFIG_ENV)
        if not path:
            return {}
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{CONFIG_ENV}={path}: no such config file")
        data = yaml.safe_load(p.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the config file must hold a mapping at the top level")
        return data


def load_config(config_file: str | Path | None = None, **overrides: Any) -> SluiceConfig:
    """Load the configuration; ``config_file`` is exported so that child processes agree."""
    if config_file is not None:
        os.environ[CONFIG_ENV] = str(Path(config_file).resolve())
    return SluiceConfig(**{k: v for k, v in overrides.items() if v is not None})
