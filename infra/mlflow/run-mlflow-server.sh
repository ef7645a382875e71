#!/usr/bin/env bash
# MLflow tracking server with a database backend (lineage and model registry) and a shared
# artifact root. Point Sluice at it with `mlflow.tracking_uri: http://<host>:5000`.
set -euo pipefail
: "${MLFLOW_DB_URI:=postgresql://mlflow:mlflow@localhost:5432/mlflow}"
: "${MLFLOW_ARTIFACTS:=/mnt/lake/mlflow-artifacts}"
exec mlflow server \
  --backend-store-uri "$MLFLOW_DB_URI" \
  --artifacts-destination "$MLFLOW_ARTIFACTS" \
  --serve-artifacts \
  --host 0.0.0.0 --port 5000
