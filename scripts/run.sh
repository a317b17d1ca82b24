#!/usr/bin/env bash
# `make run`: local services (Kafka, MariaDB, Alertmanager), the WeCom bridge (a line per
# notification Alertmanager delivers), the worker, the simulator (accelerated, every scenario on)
# and the live alert view until Ctrl-C; then stop what this script started (and only that).
#
# Each run gets its own topic prefix (fresh topics and worker state: a second run never
# meets the first one's event time), deleted again at exit. Alerts stay in the database.
#
# Environment (all optional):
#   SPCWATCH_RUN_SIMULATE_ARGS  simulator flags (default: --speed 60 --scenario all --history-days 17
#                               --infra-history-days 0: the first alerts within a minute, the menu
#                               scenario's MARGIN_EROSION (it needs 14 days of charted history) once the
#                               worker has caught up with the history (~5 min on 2 shared cores); the whole
#                               story, 30 days of history: --speed 60 --scenario all)
#   SPCWATCH_RUN_LOG_DIR        logs and pid files (default: .run/make-run)
#   SPCWATCH_RUN_KEEP_TOPICS=1  keep this run's topics instead of deleting them at exit
#   SPCWATCH_TOPIC_PREFIX       when set (even empty), used as is and its topics are kept
#   SPCWATCH_RUN_BRIDGE_ARGS    extra `spcwatch wecom-bridge` flags, e.g. --robot store-ops=https://qyapi...
#                               (default: none: notifications are only printed)
#   SPCWATCH_ALERTMANAGER_URL   default http://127.0.0.1:9093 (the services' Alertmanager)
#   SPCWATCH_WEB_PORT, SPCWATCH_DB_URL, SPCWATCH_KAFKA_BOOTSTRAP, ...  as for the worker
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python          # `python -m stream_app.cli` from the repo root: the checkout is what runs
LOG_DIR=${SPCWATCH_RUN_LOG_DIR:-.run/make-run}
PORT=${SPCWATCH_WEB_PORT:-6066}
SIM_ARGS=${SPCWATCH_RUN_SIMULATE_ARGS:---speed 60 --scenario all --history-days 17 --infra-history-days 0}
STOP_TIMEOUT=30
mkdir -p "$LOG_DIR"

say() { echo "run: $*"; }

own_prefix=false
if [[ -z ${SPCWATCH_TOPIC_PREFIX+set} ]]; then
  SPCWATCH_TOPIC_PREFIX="run$(date -u +%Y%m%d%H%M%S)-$$."
  export SPCWATCH_TOPIC_PREFIX
  own_prefix=true
fi
export SPCWATCH_WEB_PORT=$PORT
export SPCWATCH_LOG_FORMAT=${SPCWATCH_LOG_FORMAT:-text}
export SPCWATCH_DB_URL=${SPCWATCH_DB_URL:-mysql+aiomysql://spcwatch:spcwatch@127.0.0.1:3306/spcwatch}
export SPCWATCH_DATA_DIR=${SPCWATCH_DATA_DIR:-$LOG_DIR/worker-data}
export SPCWATCH_ALERTMANAGER_URL=${SPCWATCH_ALERTMANAGER_URL-http://127.0.0.1:${SPCWATCH_ALERTMANAGER_PORT:-9093}}
BRIDGE_PORT=9097   # where deploy/alertmanager/alertmanager.yml's webhooks point
# The simulator samples the estate every 5 minutes (CloudWatch basic monitoring).
export SPCWATCH_INFRA_INTERVAL_SECONDS=${SPCWATCH_INFRA_INTERVAL_SECONDS:-300}
# The simulator's event time runs 60 x faster than the wall clock, ahead of it on purpose: the
# worker's clock rule (README, Delivery guarantees) would dead-letter it, so it is off here.
export SPCWATCH_MAX_CLOCK_SKEW_SECONDS=${SPCWATCH_MAX_CLOCK_SKEW_SECONDS:-0}

# Start the services that are not running, and at exit stop only those.
started_services=()
for service in kafka mariadb alertmanager; do
  scripts/services.sh status "$service" >/dev/null 2>&1 || started_services+=("$service")
done
((${#started_services[@]} == 0)) || scripts/services.sh up "${started_services[@]}"

pids=()
names=()

# stop PID NAME: SIGTERM, then SIGKILL after STOP_TIMEOUT seconds.
stop() {
  local pid=$1 name=$2 waited=0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do
    if ((waited >= STOP_TIMEOUT * 10)); then
      say "$name did not stop after ${STOP_TIMEOUT}s: killing it"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  wait "$pid" 2>/dev/null || true
}

drop_topics() {
  "$PY" - "$SPCWATCH_TOPIC_PREFIX" <<'EOF' || say "could not delete this run's topics"
import asyncio, sys
from aiokafka.admin import AIOKafkaAdminClient
from agents.core.settings import Settings
from stream_app.runtime.topics import kafka_client_options

async def main(prefix: str) -> None:
    admin = AIOKafkaAdminClient(**kafka_client_options(Settings.from_env()), request_timeout_ms=30000)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if prefix and t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
        print(f"run: deleted {len(names)} topics prefixed {prefix!r}")
    finally:
        await admin.close()

asyncio.run(main(sys.argv[1]))
EOF
}

cleanup() {
  local rc=$?
  trap '' INT TERM   # a second Ctrl-C must not cut the clean-up short
  trap - EXIT
  echo
  say "stopping"
  # The simulator first (nothing new arrives), then the worker; reverse start order.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    stop "${pids[$i]}" "${names[$i]}"
    say "${names[$i]} stopped"
  done
  rm -f "$LOG_DIR"/*.pid
  if $own_prefix && [[ ${SPCWATCH_RUN_KEEP_TOPICS:-0} != 1 ]]; then
    drop_topics
    rm -rf "$SPCWATCH_DATA_DIR"
  fi
  ((${#started_services[@]} == 0)) || scripts/services.sh down "${started_services[@]}"
  ((rc == 130)) && rc=0   # Ctrl-C is how a run ends
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "topic prefix '$SPCWATCH_TOPIC_PREFIX'"
# shellcheck disable=SC2086  # SPCWATCH_RUN_BRIDGE_ARGS is a list of flags
"$PY" -m stream_app.cli wecom-bridge --port "$BRIDGE_PORT" ${SPCWATCH_RUN_BRIDGE_ARGS:-} 2>"$LOG_DIR/bridge.log" &
pids+=($!)
names+=("wecom bridge")
say "notifications: Alertmanager ${SPCWATCH_ALERTMANAGER_URL:-(off)} -> wecom-bridge 127.0.0.1:$BRIDGE_PORT, a 'notified' line each (log: $LOG_DIR/bridge.log)"
"$PY" -m stream_app.cli worker >"$LOG_DIR/worker.log" 2>&1 &
pids+=($!)
names+=(worker)
echo "${pids[1]}" >"$LOG_DIR/worker.pid"
say "worker starting (log: $LOG_DIR/worker.log)"
healthy=false
for _ in $(seq 1 240); do
  if curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then healthy=true; break; fi
  if ! kill -0 "${pids[1]}" 2>/dev/null; then say "worker exited:"; tail -n 40 "$LOG_DIR/worker.log"; exit 1; fi
  sleep 0.5
done
$healthy || { say "worker not healthy after 120s:"; tail -n 40 "$LOG_DIR/worker.log"; exit 1; }
say "worker healthy: metrics http://127.0.0.1:$PORT/metrics, health http://127.0.0.1:$PORT/health"

# shellcheck disable=SC2086  # SIM_ARGS is a list of flags
"$PY" -m stream_app.cli simulate $SIM_ARGS >"$LOG_DIR/simulator.log" 2>&1 &
pids+=($!)
names+=(simulator)
echo "${pids[2]}" >"$LOG_DIR/simulator.pid"
sleep 1
if ! kill -0 "${pids[2]}" 2>/dev/null; then say "simulator exited:"; tail -n 20 "$LOG_DIR/simulator.log"; exit 1; fi
say "simulator started: $SIM_ARGS (log: $LOG_DIR/simulator.log; scenarios: spcwatch simulate --list)"
say "the history goes first, as fast as possible; alerts appear as the worker catches up. Ctrl-C to stop."

# In the background + wait, so a signal to this script alone (not only Ctrl-C to the whole
# terminal group) runs the clean-up at once.
"$PY" -m stream_app.cli alerts tail --from-beginning &
pids+=($!)
names+=("alert view")
wait "${pids[3]}"
