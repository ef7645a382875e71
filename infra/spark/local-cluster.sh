#!/usr/bin/env bash
# A real Spark standalone cluster on this machine: one master and N workers (separate JVMs, each
# launching its own executors), bound to 127.0.0.1, from the pyspark that pip installed (which has
# no sbin/start-master.sh: the daemons are started through bin/spark-class).
#
#   infra/spark/local-cluster.sh start [WORKERS=2] [CORES_PER_WORKER=1] [MEMORY_PER_WORKER=2g]
#   infra/spark/local-cluster.sh stop | status | url
#
# `start` prints the master URL; point Sluice at it with configuration alone:
#   SLUICE_SPARK__MASTER=spark://127.0.0.1:PORT .venv/bin/sluice run
# State (pids, logs, ports) lives in $SLUICE_SPARK_CLUSTER_DIR (default /tmp/sluice-spark-cluster).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY="${SLUICE_PYTHON:-$ROOT/.venv/bin/python}"
STATE="${SLUICE_SPARK_CLUSTER_DIR:-/tmp/sluice-spark-cluster}"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

alive_workers() {
  # The master's JSON status: how many workers registered and are ALIVE.
  "$PY" - "$1" <<'EOF'
import json, sys, urllib.request
try:
    s = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/json/", timeout=2))
    print(sum(w["state"] == "ALIVE" for w in s["workers"]))
except Exception:
    print(0)
EOF
}

start() {
  local workers="${1:-2}" cores="${2:-1}" memory="${3:-2g}"
  if alive "$STATE/master.pid"; then
    echo "a cluster is already running: $(cat "$STATE/url")" >&2
    cat "$STATE/url"
    return 0
  fi
  rm -rf "$STATE" && mkdir -p "$STATE"
  SPARK_HOME="$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
  export SPARK_HOME SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON="$PY"
  local port ui
  port="$(free_port)"; ui="$(free_port)"
  echo "spark://127.0.0.1:$port" > "$STATE/url"
  echo "$ui" > "$STATE/ui_port"
  nohup "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.master.Master \
    --host 127.0.0.1 --port "$port" --webui-port "$ui" > "$STATE/master.log" 2>&1 &
  echo $! > "$STATE/master.pid"
  for i in $(seq 1 "$workers"); do
    mkdir -p "$STATE/worker-$i"
    nohup "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.worker.Worker \
      --host 127.0.0.1 --cores "$cores" --memory "$memory" --work-dir "$STATE/worker-$i" \
      --webui-port "$(free_port)" "spark://127.0.0.1:$port" > "$STATE/worker-$i.log" 2>&1 &
    echo $! > "$STATE/worker-$i.pid"
  done
  for _ in $(seq 1 120); do
    if [[ "$(alive_workers "$ui")" -ge "$workers" ]]; then
      echo "Spark master spark://127.0.0.1:$port with $workers workers ($cores core(s), $memory each); UI http://127.0.0.1:$ui" >&2
      cat "$STATE/url"
      return 0
    fi
    sleep 0.5
  done
  echo "the cluster did not come up within 60 s; logs in $STATE" >&2
  tail -n 20 "$STATE"/*.log >&2 || true
  stop
  return 1
}

stop() {
  [[ -d "$STATE" ]] || return 0
  local pids=() pidfile pid alive
  for pidfile in "$STATE"/worker-*.pid "$STATE/master.pid"; do
    [[ -f "$pidfile" ]] || continue
    pid="$(cat "$pidfile")"
    # spark-class execs the JVM; its executors are children of the worker JVM
    pkill -TERM -P "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
    rm -f "$pidfile"
  done
  # One shared wait of at most 10 s for every JVM, not 10 s for each in turn: after a run each
  # took most of its 10 s, and the cluster test's teardown took 30 s.
  for _ in $(seq 1 40); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ "$alive" = 0 ]] && break
    sleep 0.25
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  echo "stopped" >&2
}

status() {
  if alive "$STATE/master.pid"; then
    echo "master $(cat "$STATE/url"): $(alive_workers "$(cat "$STATE/ui_port")") worker(s) alive; UI http://127.0.0.1:$(cat "$STATE/ui_port")"
  else
    echo "not running"
    return 1
  fi
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) stop ;;
  status) status ;;
  url) cat "$STATE/url" ;;
  *) echo "usage: $0 start [workers] [cores] [memory] | stop | status | url" >&2; exit 2 ;;
esac
