import pytest

from orchestration.config import CONFIG_ENV, SluiceConfig, load_config


def test_defaults_run_on_a_laptop(monkeypatch):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    cfg = SluiceConfig()
    assert cfg.spark.master == "local[*]"
    assert cfg.mlflow_tracking_uri.startswith("sqlite:///") and cfg.mlflow_tracking_uri.endswith("_mlflow/mlflow.db")
    assert cfg.dagster_home == cfg.lakehouse_path / "_dagster"
    assert cfg.ingest.keep_truncated is False


def test_yaml_then_env_then_explicit_overrides(tmp_path, monkeypatch):
    f = tmp_path / "sluice.yaml"
    f.write_text("lakehouse_dir: /data/lake\nspark:\n  master: spark://head:7077\n  driver_memory: 8g\ningest:\n  max_payload_bytes: 100\n")
    monkeypatch.setenv("SLUICE_SPARK__DRIVER_MEMORY", "16g")
    monkeypatch.setenv(CONFIG_ENV, "")  # restored after the test; load_config exports the file
    cfg = load_config(f)
    assert cfg.spark.master == "spark://head:7077"  # from YAML
    assert cfg.spark.driver_memory == "16g"  # env beats YAML
    assert cfg.ingest.max_payload_bytes == 100
    cfg2 = load_config(f, lakehouse_dir=tmp_path / "other")
    assert cfg2.lakehouse_path == (tmp_path / "other").resolve()  # explicit beats all


def test_unknown_setting_is_a_clear_error(tmp_path, monkeypatch):
    f = tmp_path / "bad.yaml"
    f.write_text("lakehous_dir: typo\n")
    monkeypatch.setenv(CONFIG_ENV, "")
    with pytest.raises(Exception, match="lakehous_dir"):
        load_config(f)


def test_missing_config_file_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, "/nonexistent/sluice.yaml")
    with pytest.raises(FileNotFoundError, match="no such config file"):
        SluiceConfig()


def test_gpu_pods_go_to_the_selected_gpu_nodes(tmp_path, monkeypatch):
    """The pod spec handed to dagster-k8s's Pipes client for a GPU job (k8s itself is not here)."""
    from orchestration.resources import build_resources

    f = tmp_path / "sluice.yaml"
    f.write_text(
        "lakehouse_dir: " + str(tmp_path) + "\ngpu:\n  launcher: k8s\n  image: sluice:1\n  gpus: 2\n"
        "  node_selector: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}\n"
    )
    monkeypatch.setenv(CONFIG_ENV, "")
    spec = build_resources(load_config(f))["gpu"].pod_spec()
    assert spec["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 2}
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_uris_are_shown_without_their_password():
    from orchestration.config import redact_uri

    assert redact_uri("postgresql://sluice:s3cret@db:5432/mlflow") == "postgresql://sluice:***@db:5432/mlflow"
    assert redact_uri("postgresql+psycopg2://u:p%40ss@h/db?sslmode=require") == "postgresql+psycopg2://u:***@h/db?sslmode=require"
    assert redact_uri("sqlite:////lake/_mlflow/mlflow.db") == "sqlite:////lake/_mlflow/mlflow.db"
    assert redact_uri("http://mlflow:5000") == "http://mlflow:5000"


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"lakehouse_dir": "s3://bucket/lake"}, "object storage URIs are not supported yet"),
        ({"lakehouse_dir": "/"}, "lakehouse_dir is /: refusing a system or home folder"),
        ({"lakehouse_dir": "/etc"}, "refusing a system or home folder"),
        ({"dagster": {"home": "~"}}, "dagster.home is"),
        ({"lakehouse_dir": "/data/x", "landing_dir": "/data/x/landing"}, "must not be the lakehouse_dir"),
        ({"lakehouse_dir": "/data/x", "landing_dir": "/data/x"}, "must not be the lakehouse_dir"),
    ],
)
def test_configured_folders_are_validated(settings, message, monkeypatch):
    """A takedown rewrites files under the lakehouse and the Dagster home, and stray cleanup
    deletes files: a folder that would make that destructive is refused with a clear error."""
    from pydantic import ValidationError

    monkeypatch.delenv(CONFIG_ENV, raising=False)
    with pytest.raises(ValidationError, match=message):
        SluiceConfig(**settings)
    SluiceConfig(lakehouse_dir="/data/crawls/lake", landing_dir="/data/crawls")  # a lakehouse beside the crawls is fine


def test_an_invalid_config_is_a_plain_error_naming_the_key(tmp_path, capsys, monkeypatch):
    """A renamed or mistyped key stops the CLI with exit 2 and one line per problem, not a traceback."""
    from orchestration.cli import main

    monkeypatch.setenv(CONFIG_ENV, "")  # restored after the test: load_config exports the file

    conf = tmp_path / "old.yaml"
    conf.write_text("scoring:\n  classifiers:\n    - {name: quality, kind: signals, model: 'builtin:signals-v1'}\n")
    with pytest.raises(SystemExit) as stop:
        main(["tables", "--config", str(conf), "--lakehouse", str(tmp_path / "lh")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "old.yaml) is not valid" in err and "scoring.classifiers is now scoring.scorers" in err and "Traceback" not in err
