#!/usr/bin/env bash
# `make run`: local services, the worker (and the simulator once it exists), and
# a live view until Ctrl-C; then stop what this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
RUN_DIR=${SPCWATCH_RUN_DIR:-.run}
PORT=${SPCWATCH_WEB_PORT:-6066}
mkdir -p "$RUN_DIR"

services_were_up=false
scripts/services.sh status >/dev/null 2>&1 && services_were_up=true
scripts/services.sh up

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "run: stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  $services_were_up || scripts/services.sh down
}
trap cleanup INT TERM EXIT

export SPCWATCH_LOG_FORMAT=${SPCWATCH_LOG_FORMAT:-text}
export SPCWATCH_DB_URL=${SPCWATCH_DB_URL:-mysql+aiomysql://spcwatch:spcwatch@127.0.0.1:3306/spcwatch}
$BIN/spcwatch worker >"$RUN_DIR/worker.log" 2>&1 &
pids+=($!)
echo "run: worker starting (log: $RUN_DIR/worker.log)"
for _ in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "${pids[0]}" 2>/dev/null; then echo "run: worker exited:"; tail -n 40 "$RUN_DIR/worker.log"; exit 1; fi
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null || { echo "run: worker not healthy"; tail -n 40 "$RUN_DIR/worker.log"; exit 1; }
echo "run: worker healthy — metrics http://127.0.0.1:$PORT/metrics, health http://127.0.0.1:$PORT/health"

if $BIN/spcwatch simulate --help >/dev/null 2>&1; then
  $BIN/spcwatch simulate --speed 60 --scenario all >"$RUN_DIR/simulator.log" 2>&1 &
  pids+=($!)
  echo "run: simulator started (log: $RUN_DIR/simulator.log)"
fi

if $BIN/spcwatch alerts tail --help >/dev/null 2>&1; then
  $BIN/spcwatch alerts tail
else
  echo "run: following the worker log (Ctrl-C to stop)"
  tail -n 0 -F "$RUN_DIR/worker.log"
fi
