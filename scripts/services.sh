#!/usr/bin/env bash
# Local dev services for spcwatch, without Docker:
#   * Apache Kafka 4.x (KRaft, single node) on 127.0.0.1:9092, jars from Maven Central
#   * MariaDB (Debian packages, our own instance) on 127.0.0.1:3306, database spcwatch
#   * Alertmanager (Debian package prometheus-alertmanager) on 127.0.0.1:9093 with
#     deploy/alertmanager/alertmanager.yml, its silences and notification log in the run dir
#
# Usage: scripts/services.sh up [SERVICE...] | down [--purge] [SERVICE...] | purge | status [SERVICE] | tools
#        scripts/services.sh kafka-user NAME [PREFIX [topics|groups]]     (secure profile only)
#   SERVICE: kafka, mariadb, alertmanager (default: all three)
#
#   up       start whatever is not running yet (idempotent), wait until Kafka does a
#            produce/consume round trip, MariaDB answers SELECT 1 and Alertmanager
#            answers /-/ready, print endpoints
#   down     stop what `up` started (pid files); no-op when nothing runs
#   down --purge, purge
#            stop, then delete the run dir's data, logs and config of those services
#   status   show what is running; exit 0 only when every service named answers
#   tools    install (Debian packages, first run only) the binaries the test suite runs beside
#            the services: prometheus + promtool, amtool, chromium (`make test` calls it)
#   kafka-user  create or update a SCRAM-SHA-512 user on the secure broker, its password from
#            SPCWATCH_KAFKA_USER_PASSWORD; with PREFIX, allow it everything on the topics and
#            groups whose names start with PREFIX ('*': all; '=NAME': only NAME; a comma-separated
#            list of those), or only on the topics or only on the groups
#
# Secure profiles (each a separate instance: own ports, data and config; the plaintext services
# above are not touched):
#   SPCWATCH_KAFKA_SECURE=1   kafka: a SASL_SSL listener (SCRAM-SHA-512) on 127.0.0.1:9194 with a
#            CA and broker certificate made by openssl + keytool on first start (<run dir>/kafka-secure/tls,
#            clients trust ca.pem), StandardAuthorizer ACLs, super user `admin` (random password in
#            kafka-secure/admin.properties), and the application user SPCWATCH_KAFKA_SECURE_USER
#            (spcwatch) / SPCWATCH_KAFKA_SECURE_PASSWORD (spcwatch-secret) allowed everything on the
#            topics and groups named SPCWATCH_KAFKA_SECURE_ACL_PREFIX* (default '*': all; '': no ACLs).
#            The KRaft controller listener stays plaintext on loopback (SCRAM cannot serve it).
#   SPCWATCH_MYSQL_TLS=1      mariadb: TLS required (require_secure_transport) on 127.0.0.1:3308, its
#            own CA and server certificate (<run dir>/mariadb-tls/tls/ca.pem, clients pass it as ssl_ca)
#
# Environment (all optional):
#   SPCWATCH_RUN_DIR        run dir: data, logs, pid files, config   (default: <repo>/.run)
#   SPCWATCH_CACHE_DIR      Kafka jar cache (default: ${XDG_CACHE_HOME:-~/.cache}/spcwatch)
#   SPCWATCH_KAFKA_VERSION  org.apache.kafka:kafka_2.13 version        (default: 4.1.1)
#   SPCWATCH_KAFKA_PORT / SPCWATCH_KAFKA_CONTROLLER_PORT               (9092 / 9095)
#   SPCWATCH_KAFKA_HEAP_OPTS                                  (default: -Xms256m -Xmx512m)
#   SPCWATCH_MYSQL_PORT                                                 (default: 3306)
#   SPCWATCH_ALERTMANAGER_PORT                                          (default: 9093)
#   SPCWATCH_ALERTMANAGER_CONFIG  (default: <repo>/deploy/alertmanager/alertmanager.yml)
#   SPCWATCH_KAFKA_SECURE_PORT / SPCWATCH_KAFKA_SECURE_CONTROLLER_PORT (9194 / 9195)
#   SPCWATCH_MYSQL_TLS_PORT                                             (default: 3308)
#   SPCWATCH_ALERTMANAGER_CLUSTER_PORT  gossip port of an HA member (default: none, clustering off)
#   SPCWATCH_ALERTMANAGER_PEERS   comma-separated host:port gossip addresses of the other members
#   SPCWATCH_ALERTMANAGER_ARGS    extra alertmanager flags (e.g. --cluster.peer-timeout=2s)
#   SPCWATCH_START_TIMEOUT  seconds to wait for each service to answer  (default: 60)
#   SPCWATCH_STOP_TIMEOUT   seconds between SIGTERM and SIGKILL on down (default: 20)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

HOST=127.0.0.1
RUN_DIR=$(realpath -m "${SPCWATCH_RUN_DIR:-$REPO_ROOT/.run}")
CACHE_DIR=$(realpath -m "${SPCWATCH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/spcwatch}")
START_TIMEOUT=${SPCWATCH_START_TIMEOUT:-60}
STOP_TIMEOUT=${SPCWATCH_STOP_TIMEOUT:-20}

KAFKA_VERSION=${SPCWATCH_KAFKA_VERSION:-4.1.1}
KAFKA_PORT=${SPCWATCH_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${SPCWATCH_KAFKA_CONTROLLER_PORT:-9095}
KAFKA_HEAP_OPTS=${SPCWATCH_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
KAFKA_LIBS=$CACHE_DIR/kafka-$KAFKA_VERSION/libs
KAFKA_LIBS_MARKER=$KAFKA_LIBS/.spcwatch-complete
KAFKA_DIR=$RUN_DIR/kafka
KAFKA_SECURE=0
if [[ ${SPCWATCH_KAFKA_SECURE:-0} =~ ^(1|true|yes|on)$ ]]; then
  KAFKA_SECURE=1
  KAFKA_PORT=${SPCWATCH_KAFKA_SECURE_PORT:-9194}
  KAFKA_CONTROLLER_PORT=${SPCWATCH_KAFKA_SECURE_CONTROLLER_PORT:-9195}
  KAFKA_DIR=$RUN_DIR/kafka-secure
fi
KAFKA_TLS=$KAFKA_DIR/tls
KAFKA_ADMIN_USER=admin
KAFKA_ADMIN_PROPS=$KAFKA_DIR/admin.properties
KAFKA_APP_USER=${SPCWATCH_KAFKA_SECURE_USER:-spcwatch}
KAFKA_APP_PASSWORD=${SPCWATCH_KAFKA_SECURE_PASSWORD:-spcwatch-secret}
KAFKA_APP_ACL_PREFIX=${SPCWATCH_KAFKA_SECURE_ACL_PREFIX-*}
KAFKA_DATA=$KAFKA_DIR/data
KAFKA_LOGS=$KAFKA_DIR/logs
KAFKA_LOG=$KAFKA_LOGS/server.log
KAFKA_OUT=$KAFKA_LOGS/kafka.out          # JVM stdout/stderr (crashes, early errors)
KAFKA_CONF=$KAFKA_DIR/server.properties
KAFKA_CLUSTER_ID_FILE=$KAFKA_DIR/cluster.id
KAFKA_PID_FILE=$KAFKA_DIR/kafka.pid

MYSQL_PORT=${SPCWATCH_MYSQL_PORT:-3306}
MDB_DIR=$RUN_DIR/mariadb
MYSQL_TLS=0
if [[ ${SPCWATCH_MYSQL_TLS:-0} =~ ^(1|true|yes|on)$ ]]; then
  MYSQL_TLS=1
  MYSQL_PORT=${SPCWATCH_MYSQL_TLS_PORT:-3308}
  MDB_DIR=$RUN_DIR/mariadb-tls
fi
MDB_TLS=$MDB_DIR/tls
MDB_DATA=$MDB_DIR/data
MDB_SOCK=$MDB_DIR/mysqld.sock
MDB_PID_FILE=$MDB_DIR/mariadbd.pid
MDB_LOG=$MDB_DIR/mariadbd.err
MDB_OUT=$MDB_DIR/mariadbd.out
AM_PORT=${SPCWATCH_ALERTMANAGER_PORT:-9093}
AM_CONFIG=$(realpath -m "${SPCWATCH_ALERTMANAGER_CONFIG:-$REPO_ROOT/deploy/alertmanager/alertmanager.yml}")
AM_CLUSTER_PORT=${SPCWATCH_ALERTMANAGER_CLUSTER_PORT:-}
AM_PEERS=${SPCWATCH_ALERTMANAGER_PEERS:-}
AM_ARGS=${SPCWATCH_ALERTMANAGER_ARGS:-}
AM_DIR=$RUN_DIR/alertmanager
AM_DATA=$AM_DIR/data
AM_LOG=$AM_DIR/alertmanager.log
AM_PID_FILE=$AM_DIR/alertmanager.pid
AM_BIN=""
AM_OWNED=0
AM_LOG_FROM=0
# Fixed, local-only dev credentials (only ever printed masked).
DB_NAME=spcwatch
DB_USER=spcwatch
DB_PASSWORD=spcwatch

PYTHON=""          # interpreter for check_services.py, see pick_python
KAFKA_OWNED=0      # 1 when the broker answering on KAFKA_PORT is ours (pid file)
MDB_OWNED=0
KAFKA_LOG_FROM=0   # log sizes when this run started a service: failures show
KAFKA_OUT_FROM=0   # only what that start wrote
MDB_LOG_FROM=0
MDB_OUT_FROM=0

# ------------------------------------------------------------------------ helpers

say() { echo "services: $*"; }
warn() { echo "services: $*" >&2; }
die() { echo "services: ERROR: $*" >&2; exit 1; }

# Path relative to the repo root when it is inside it (for messages).
rel() { if [[ $1 == "$REPO_ROOT/"* ]]; then echo "${1#"$REPO_ROOT/"}"; else echo "$1"; fi; }

# file_size FILE: bytes (0 if missing); used to show only what a start wrote.
file_size() { stat -c %s "$1" 2>/dev/null || echo 0; }

# tail_log LABEL FILE [FROM_BYTE]: last lines of a log (from FROM_BYTE on) to stderr.
tail_log() {
  local label=$1 file=$2 from=${3:-0}
  [[ -s $file ]] || return 0
  (($(file_size "$file") > from)) || return 0
  echo "services: ---- last 40 lines of $label ($(rel "$file")) ----" >&2
  tail -c +"$((from + 1))" "$file" | tail -n 40 >&2
  echo "services: ---- end of $label ----" >&2
}

port_open() { timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

# port_still_busy PORT: the port stays open for 3 s (a process killed a moment ago
# may still hold its listening socket while it exits).
port_still_busy() {
  local i
  for ((i = 0; i < 6; i++)); do
    port_open "$1" || return 1
    sleep 0.5
  done
}

# proc_alive PID: the process exists and is not a zombie.
proc_alive() {
  local stat
  kill -0 "$1" 2>/dev/null || return 1
  read -r stat <"/proc/$1/stat" 2>/dev/null || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# pid_matches PID PATTERN: PID is a live process whose command line contains
# PATTERN. Guards against pid reuse after a crash or reboot.
pid_matches() {
  local pid=$1 pattern=$2 cmdline
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  proc_alive "$pid" || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$pattern"* ]]
}

# running_pid NAME PIDFILE PATTERN: print the pid if the recorded process still
# runs; otherwise remove a stale pid file (e.g. after kill -9) and fail.
running_pid() {
  local name=$1 file=$2 pattern=$3 pid
  [[ -f $file ]] || return 1
  pid=$(<"$file") || return 1
  if pid_matches "$pid" "$pattern"; then
    echo "$pid"
    return 0
  fi
  rm -f "$file"
  echo "services: $name: removed stale pid file $(rel "$file") (pid ${pid:-?} is gone)" >&2
  return 1
}

kafka_pid() { running_pid kafka "$KAFKA_PID_FILE" "$KAFKA_CONF"; }
mariadb_pid() { running_pid mariadb "$MDB_PID_FILE" "--datadir=$MDB_DATA"; }
alertmanager_pid() { running_pid alertmanager "$AM_PID_FILE" "--storage.path=$AM_DATA"; }

# launch_bg PIDFILE OUTFILE CMD...: run CMD detached (own session, immune to
# SIGHUP, no inherited lock fd); the process writes its own pid before exec.
launch_bg() {
  local pid_file=$1 out=$2
  shift 2
  rm -f "$pid_file"
  # shellcheck disable=SC2016  # $$ and $@ are for the inner bash
  nohup setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pid_file" "$@" \
    </dev/null >>"$out" 2>&1 9>&- &
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -s $pid_file ]] && return 0
    sleep 0.1
  done
  die "could not start $1 (no pid file $(rel "$pid_file"))"
}

# wait_exit PID TENTHS: wait up to TENTHS/10 s for PID to exit.
wait_exit() {
  local pid=$1 tenths=$2 i
  for ((i = 0; i < tenths; i++)); do
    proc_alive "$pid" || return 0
    sleep 0.1
  done
  ! proc_alive "$pid"
}

# stop_pid NAME PID: SIGTERM, wait up to STOP_TIMEOUT s, then SIGKILL.
stop_pid() {
  local name=$1 pid=$2
  say "$name: stopping (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_exit "$pid" "$((STOP_TIMEOUT * 10))"; then
    warn "$name: still running after ${STOP_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_exit "$pid" 100 || die "$name: pid $pid survived SIGKILL"
  fi
  say "$name: stopped"
}

as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

# Interpreter for check_services.py: the project venv, else a python3 that can
# import aiokafka and pymysql.
pick_python() {
  [[ -n $PYTHON ]] && return 0
  if [[ -x $REPO_ROOT/.venv/bin/python ]]; then
    PYTHON=$REPO_ROOT/.venv/bin/python
  elif command -v python3 >/dev/null && python3 -c 'import aiokafka, pymysql' 2>/dev/null; then
    PYTHON=python3
  else
    die "no Python with aiokafka and PyMySQL for the health checks: run \`make venv\` first"
  fi
}

check() { "$PYTHON" "$SCRIPT_DIR/check_services.py" "$@"; }

take_lock() {
  mkdir -p "$RUN_DIR"
  exec 9>"$RUN_DIR/.services.lock"
  if ! flock -n 9; then
    say "another services.sh is running, waiting for it"
    flock -w 900 9 || die "timed out waiting for $(rel "$RUN_DIR")/.services.lock"
  fi
}

# ------------------------------------------------------------------------ tls

# secret_file FILE: a random hex secret kept in FILE (0600), made on first use.
secret_file() {
  if [[ ! -s $1 ]]; then
    mkdir -p "$(dirname "$1")"
    (umask 077 && openssl rand -hex 16 >"$1")
  fi
  cat "$1"
}

# tls_make_certs DIR NAME: a private CA (DIR/ca.pem) and a server certificate signed by it
# (DIR/server.pem, DIR/server.key) for 127.0.0.1 and localhost, made once with openssl.
tls_make_certs() {
  local dir=$1 name=$2
  [[ -s $dir/server.pem && -s $dir/ca.pem ]] && return 0
  command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
  say "$name: making a CA and a server certificate in $(rel "$dir") (first start only)"
  mkdir -p "$dir"
  chmod 700 "$dir"
  {
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=spcwatch dev CA ($name)" \
      -keyout "$dir/ca.key" -out "$dir/ca.pem" &&
      openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout "$dir/server.key" -out "$dir/server.csr" &&
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$dir/server.ext" &&
      openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 825 -extfile "$dir/server.ext" -out "$dir/server.pem"
  } >"$dir/openssl.log" 2>&1 || {
    tail_log "openssl" "$dir/openssl.log"
    rm -f "$dir/server.pem"
    die "$name: could not make the TLS certificates"
  }
}

# ------------------------------------------------------------------------ kafka

require_java17() {
  command -v java >/dev/null || die "java not found: Kafka $KAFKA_VERSION needs Java 17+ (apt-get install openjdk-17-jre-headless)"
  local version major
  version=$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)
  major=${version%%.*}
  [[ $major =~ ^[0-9]+$ && $major -ge 17 ]] || die "java $version found, Kafka $KAFKA_VERSION needs Java 17+"
}

# Fetch kafka_2.13 and its runtime deps (+ the log4j2 slf4j binding) once into
# the cache; the marker file says the folder is complete.
kafka_ensure_libs() {
  [[ -f $KAFKA_LIBS_MARKER ]] && return 0
  command -v mvn >/dev/null || die "mvn not found: needed once to fetch the Kafka jars (apt-get install maven)"
  local tmp=$KAFKA_LIBS.partial mvn_log=$CACHE_DIR/kafka-$KAFKA_VERSION/mvn.log
  say "kafka: fetching kafka_2.13:$KAFKA_VERSION jars from Maven Central into $(rel "$KAFKA_LIBS") (first run only)"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  if ! (cd "$SCRIPT_DIR/kafka" && mvn -q -B -f pom.xml dependency:copy-dependencies \
    "-Dkafka.version=$KAFKA_VERSION" "-DoutputDirectory=$tmp") >"$mvn_log" 2>&1; then
    tail_log "mvn" "$mvn_log"
    die "could not fetch Kafka $KAFKA_VERSION with mvn (is the version on Maven Central? try SPCWATCH_KAFKA_VERSION=4.0.1)"
  fi
  [[ -f $tmp/kafka_2.13-$KAFKA_VERSION.jar ]] || die "mvn finished but $tmp/kafka_2.13-$KAFKA_VERSION.jar is missing"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  date -u +%FT%TZ >"$KAFKA_LIBS_MARKER"
}

# The secure profile's key material: the broker's PKCS12 keystore (openssl) and the truststore
# holding the CA (keytool) that the broker needs to reach itself over SASL_SSL.
kafka_secure_tls() {
  local password
  tls_make_certs "$KAFKA_TLS" kafka
  password=$(secret_file "$KAFKA_TLS/store.password")
  [[ -s $KAFKA_TLS/broker.p12 && -s $KAFKA_TLS/truststore.p12 ]] && return 0
  command -v keytool >/dev/null || die "keytool not found (it comes with Java: apt-get install openjdk-17-jre-headless)"
  rm -f "$KAFKA_TLS/broker.p12" "$KAFKA_TLS/truststore.p12"
  {
    openssl pkcs12 -export -name broker -in "$KAFKA_TLS/server.pem" -inkey "$KAFKA_TLS/server.key" \
      -certfile "$KAFKA_TLS/ca.pem" -out "$KAFKA_TLS/broker.p12" -passout "pass:$password" &&
      keytool -importcert -noprompt -alias spcwatch-ca -file "$KAFKA_TLS/ca.pem" \
        -keystore "$KAFKA_TLS/truststore.p12" -storetype PKCS12 -storepass "$password"
  } >"$KAFKA_TLS/keytool.log" 2>&1 || {
    tail_log "openssl/keytool" "$KAFKA_TLS/keytool.log"
    rm -f "$KAFKA_TLS/broker.p12" "$KAFKA_TLS/truststore.p12"
    die "kafka: could not make the keystore and truststore"
  }
}

# The super user's client configuration (SecureAdmin.java reads it); the broker uses the same login.
kafka_secure_admin_props() {
  local admin_password store_password
  admin_password=$(secret_file "$KAFKA_DIR/admin.password")
  store_password=$(secret_file "$KAFKA_TLS/store.password")
  (umask 077 && cat >"$KAFKA_ADMIN_PROPS" <<EOF
bootstrap.servers=$HOST:$KAFKA_PORT
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$KAFKA_ADMIN_USER" password="$admin_password";
ssl.truststore.location=$KAFKA_TLS/truststore.p12
ssl.truststore.type=PKCS12
ssl.truststore.password=$store_password
EOF
  )
}

kafka_listener_config() {
  if ((KAFKA_SECURE)); then
    local admin_password store_password
    admin_password=$(secret_file "$KAFKA_DIR/admin.password")
    store_password=$(secret_file "$KAFKA_TLS/store.password")
    cat <<EOF
listeners=SASL_SSL://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=SASL_SSL://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
inter.broker.listener.name=SASL_SSL

# Secure profile: SCRAM-SHA-512 over TLS, ACLs. The broker logs in to itself as the super user;
# the controller listener (loopback, plaintext) acts as ANONYMOUS, which the controller must trust.
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$KAFKA_ADMIN_USER" password="$admin_password";
ssl.keystore.location=$KAFKA_TLS/broker.p12
ssl.keystore.type=PKCS12
ssl.keystore.password=$store_password
ssl.key.password=$store_password
ssl.truststore.location=$KAFKA_TLS/truststore.p12
ssl.truststore.type=PKCS12
ssl.truststore.password=$store_password
ssl.client.auth=none
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:$KAFKA_ADMIN_USER;User:ANONYMOUS
EOF
  else
    cat <<EOF
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
EOF
  fi
}

kafka_write_config() {
  mkdir -p "$KAFKA_DATA" "$KAFKA_LOGS"
  if ((KAFKA_SECURE)); then
    kafka_secure_tls
    kafka_secure_admin_props
  fi
  (umask 077 && cat >"$KAFKA_CONF" <<EOF
# Generated by scripts/services.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
$(kafka_listener_config)

log.dirs=$KAFKA_DATA
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=false
delete.topic.enable=true
group.initial.rebalance.delay.ms=0

offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1

num.network.threads=2
num.io.threads=4
log.retention.hours=24
log.segment.bytes=104857600
EOF
  )
}

kafka_tool() {
  java -Xmx256m -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/tools-log4j2.yaml" \
    -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool "$@"
}

# Format the KRaft storage once (static quorum via controller.quorum.voters, so
# no --standalone / --initial-controllers needed).
kafka_format_storage() {
  [[ -f $KAFKA_DATA/meta.properties ]] && return 0
  local cluster_id
  if [[ ! -s $KAFKA_CLUSTER_ID_FILE ]]; then
    cluster_id=$(kafka_tool random-uuid) || die "kafka: StorageTool random-uuid failed"
    echo "$cluster_id" >"$KAFKA_CLUSTER_ID_FILE"
  fi
  cluster_id=$(<"$KAFKA_CLUSTER_ID_FILE")
  say "kafka: formatting KRaft storage in $(rel "$KAFKA_DATA") (cluster id $cluster_id)"
  local scram=()
  # The super user's SCRAM credential must exist before the broker can log in to itself.
  ((KAFKA_SECURE)) &&
    scram=(--add-scram "SCRAM-SHA-512=[name=$KAFKA_ADMIN_USER,password=$(secret_file "$KAFKA_DIR/admin.password")]")
  kafka_tool format --ignore-formatted -t "$cluster_id" -c "$KAFKA_CONF" "${scram[@]}" >"$KAFKA_LOGS/format.log" 2>&1 || {
    tail_log "kafka storage format" "$KAFKA_LOGS/format.log"
    die "kafka: storage format failed"
  }
}

kafka_start() {
  ! port_open "$KAFKA_CONTROLLER_PORT" ||
    die "kafka: the controller port $HOST:$KAFKA_CONTROLLER_PORT is already in use; set SPCWATCH_KAFKA_CONTROLLER_PORT"
  require_java17
  kafka_ensure_libs
  kafka_write_config
  kafka_format_storage
  local what="KRaft"
  ((KAFKA_SECURE)) && what="KRaft, SASL_SSL with SCRAM-SHA-512 and ACLs"
  say "kafka: starting Kafka $KAFKA_VERSION ($what) on $HOST:$KAFKA_PORT"
  KAFKA_LOG_FROM=$(file_size "$KAFKA_LOG")
  KAFKA_OUT_FROM=$(file_size "$KAFKA_OUT")
  # shellcheck disable=SC2086  # heap opts are several words
  launch_bg "$KAFKA_PID_FILE" "$KAFKA_OUT" \
    java $KAFKA_HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/log4j2.yaml" \
    -Dkafka.logs.dir="$KAFKA_LOGS" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONF"
}

kafka_fail() {
  local errors
  tail_log "kafka server.log" "$KAFKA_LOG" "$KAFKA_LOG_FROM"
  tail_log "kafka JVM output" "$KAFKA_OUT" "$KAFKA_OUT_FROM"
  # A stack trace fills the tail; repeat the log's last ERROR/FATAL lines.
  errors=$(tail -c +"$((KAFKA_LOG_FROM + 1))" "$KAFKA_LOG" 2>/dev/null |
    grep -E '^\[[^]]*\] (ERROR|FATAL) ' | tail -n 5 | cut -c1-400 || true)
  if [[ -n $errors ]]; then
    echo "services: ---- last ERROR/FATAL lines of kafka server.log ----" >&2
    echo "$errors" >&2
  fi
  die "kafka: $*"
}

# kafka_check ARGS...: check_services.py kafka against our broker (as the super user when secure).
kafka_check() {
  if ((KAFKA_SECURE)); then
    SPCWATCH_CHECK_SASL_PASSWORD=$(secret_file "$KAFKA_DIR/admin.password") \
      check kafka --sasl-user "$KAFKA_ADMIN_USER" --cafile "$KAFKA_TLS/ca.pem" --bootstrap "$HOST:$KAFKA_PORT" "$@"
  else
    check kafka --bootstrap "$HOST:$KAFKA_PORT" "$@"
  fi
}

# secure_admin NAME [PREFIX [topics|groups]]: SCRAM user (password in SPCWATCH_KAFKA_USER_PASSWORD)
# and ACLs, with scripts/kafka/SecureAdmin.java on the broker's own jars.
# Compiled once into the run dir when javac is there (a JDK); a bare JRE runs the source file
# (Java 11+ single-file launch), compiling it on every call.
secure_admin() {
  local out=$KAFKA_LOGS/secure-admin.log src=$SCRIPT_DIR/kafka/SecureAdmin.java classes=$KAFKA_DIR/classes
  local program=("$src") cp="$KAFKA_LIBS/*"
  if command -v javac >/dev/null; then
    if [[ ! -f $classes/SecureAdmin.class || $src -nt $classes/SecureAdmin.class ]]; then
      javac -J-Xmx256m -nowarn -d "$classes" -cp "$KAFKA_LIBS/*" "$src" >"$out" 2>&1 || {
        tail_log "javac SecureAdmin.java" "$out"
        die "kafka: could not compile $(rel "$src")"
      }
    fi
    program=(SecureAdmin)
    cp="$classes:$KAFKA_LIBS/*"
  fi
  java -Xmx128m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/tools-log4j2.yaml" -cp "$cp" \
    "${program[@]}" "$KAFKA_ADMIN_PROPS" user "$@" >"$out" 2>&1 || {
    tail_log "SecureAdmin" "$out"
    die "kafka: could not set up the SCRAM user $1"
  }
  say "kafka: $(grep -h '^SecureAdmin:' "$out" | sed 's/^SecureAdmin: //')"
}

# The application user of the secure profile, with its ACLs.
kafka_secure_provision() {
  local acl=()
  [[ -n $KAFKA_APP_ACL_PREFIX ]] && acl=("$KAFKA_APP_ACL_PREFIX")
  SPCWATCH_KAFKA_USER_PASSWORD=$KAFKA_APP_PASSWORD secure_admin "$KAFKA_APP_USER" "${acl[@]}"
}

# Phase 1 of `up`: use a running broker, or start ours (does not wait).
kafka_begin() {
  local pid
  if pid=$(kafka_pid); then
    KAFKA_OWNED=1
    say "kafka: already running (pid $pid)"
  elif ((KAFKA_SECURE)) && port_open "$KAFKA_PORT"; then
    die "kafka: $HOST:$KAFKA_PORT is in use, but not by the secure broker of $(rel "$KAFKA_DIR"); set SPCWATCH_KAFKA_SECURE_PORT"
  elif port_open "$KAFKA_PORT" && kafka_check --probe --timeout 10 >/dev/null 2>&1; then
    say "kafka: using the broker already listening on $HOST:$KAFKA_PORT (not started by services.sh)"
  else
    port_still_busy "$KAFKA_PORT" &&
      die "kafka: something listens on $HOST:$KAFKA_PORT but does not answer as Kafka; free the port or set SPCWATCH_KAFKA_PORT"
    kafka_start
    KAFKA_OWNED=1
  fi
}

# Phase 2 of `up`: wait for the port, then for a produce/consume round trip.
kafka_wait_ready() {
  local deadline=$((SECONDS + START_TIMEOUT)) remaining
  while ! port_open "$KAFKA_PORT"; do
    if ((KAFKA_OWNED)) && ! kafka_pid >/dev/null; then
      kafka_fail "the broker exited during startup"
    fi
    ((SECONDS < deadline)) || kafka_fail "nothing listens on $HOST:$KAFKA_PORT after ${START_TIMEOUT}s"
    sleep 0.5
  done
  remaining=$((deadline - SECONDS))
  ((remaining >= 15)) || remaining=15
  kafka_check --timeout "$remaining" >/dev/null ||
    kafka_fail "no produce/consume round trip on $HOST:$KAFKA_PORT"
  if ((KAFKA_SECURE)); then kafka_secure_provision; fi
}

# ------------------------------------------------------------------------ mariadb

MARIADBD="" INSTALL_DB="" MYSQL_CLIENT=""

find_mariadb_binaries() {
  local candidate
  MARIADBD="" INSTALL_DB="" MYSQL_CLIENT=""
  # mariadbd lives in /usr/sbin on Debian, which is not on every user's PATH.
  for candidate in /usr/sbin/mariadbd /usr/sbin/mysqld "$(command -v mariadbd || true)" "$(command -v mysqld || true)"; do
    if [[ -n $candidate && -x $candidate ]]; then
      MARIADBD=$candidate
      break
    fi
  done
  INSTALL_DB=$(command -v mariadb-install-db || command -v mysql_install_db || true)
  MYSQL_CLIENT=$(command -v mariadb || command -v mysql || true)
  [[ -n $MARIADBD && -n $INSTALL_DB && -n $MYSQL_CLIENT ]]
}

# apt-get install, with `apt-get update` only if the plain install fails.
# A temporary policy-rc.d keeps the package from starting the system-wide
# server (we run our own instance in the run dir).
apt_install() {
  local apt_log=$RUN_DIR/apt-install.log policy=/usr/sbin/policy-rc.d added_policy=0 rc=0
  command -v apt-get >/dev/null || die "apt-get not found: install $* yourself"
  if [[ ! -e $policy ]]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy"
    added_policy=1
  fi
  local install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@")
  if ! as_root "${install[@]}" >"$apt_log" 2>&1; then
    say "apt-get install failed, running apt-get update and retrying"
    as_root apt-get update -q >>"$apt_log" 2>&1 && as_root "${install[@]}" >>"$apt_log" 2>&1 || rc=$?
  fi
  ((added_policy)) && as_root rm -f "$policy"
  if ((rc != 0)); then
    tail_log "apt-get" "$apt_log"
    die "could not install $*"
  fi
}

mariadb_ensure_installed() {
  find_mariadb_binaries && return 0
  say "mariadb: installing mariadb-server and mariadb-client from Debian packages (first run only)"
  apt_install mariadb-server mariadb-client
  find_mariadb_binaries || die "mariadb: packages installed but mariadbd / mariadb-install-db / mariadb not found"
}

mariadb_init_datadir() {
  [[ -d $MDB_DATA/mysql ]] && return 0
  say "mariadb: initialising data dir $(rel "$MDB_DATA")"
  rm -rf "$MDB_DATA"
  mkdir -p "$MDB_DATA"
  if ! "$INSTALL_DB" --no-defaults --user="$(id -un)" --datadir="$MDB_DATA" \
    --auth-root-authentication-method=normal --skip-test-db >"$MDB_DIR/install-db.log" 2>&1; then
    tail_log "mariadb-install-db" "$MDB_DIR/install-db.log"
    rm -rf "$MDB_DATA"
    die "mariadb: mariadb-install-db failed"
  fi
}

mariadb_start() {
  ((${#MDB_SOCK} < 108)) || die "mariadb: socket path $MDB_SOCK is too long for a unix socket; use a shorter SPCWATCH_RUN_DIR"
  local tls=()
  if ((MYSQL_TLS)); then
    tls_make_certs "$MDB_TLS" mariadb
    tls=(--ssl-ca="$MDB_TLS/ca.pem" --ssl-cert="$MDB_TLS/server.pem" --ssl-key="$MDB_TLS/server.key"
      --require-secure-transport=ON)
    say "mariadb: starting $(basename "$MARIADBD") on $HOST:$MYSQL_PORT (TLS required)"
  else
    say "mariadb: starting $(basename "$MARIADBD") on $HOST:$MYSQL_PORT"
  fi
  MDB_LOG_FROM=$(file_size "$MDB_LOG")
  MDB_OUT_FROM=$(file_size "$MDB_OUT")
  launch_bg "$MDB_PID_FILE" "$MDB_OUT" \
    "$MARIADBD" --no-defaults --user="$(id -un)" \
    --datadir="$MDB_DATA" --socket="$MDB_SOCK" --port="$MYSQL_PORT" \
    --bind-address="$HOST" --pid-file="$MDB_PID_FILE" --log-error="$MDB_LOG" \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    --skip-name-resolve --max-connections=300 --innodb-buffer-pool-size=128M "${tls[@]}"
}

mariadb_fail() {
  tail_log "mariadb error log" "$MDB_LOG" "$MDB_LOG_FROM"
  tail_log "mariadbd output" "$MDB_OUT" "$MDB_OUT_FROM"
  die "mariadb: $*"
}

root_sql() { "$MYSQL_CLIENT" --no-defaults --protocol=socket --socket="$MDB_SOCK" -uroot "$@"; }

mariadb_wait_socket() {
  local deadline=$((SECONDS + START_TIMEOUT))
  until root_sql -e 'SELECT 1' >/dev/null 2>&1; do
    mariadb_pid >/dev/null || mariadb_fail "mariadbd exited during startup"
    ((SECONDS < deadline)) || mariadb_fail "no answer on $(rel "$MDB_SOCK") after ${START_TIMEOUT}s"
    sleep 0.3
  done
}

provision_sql() {
  local host
  echo "CREATE DATABASE IF NOT EXISTS \`$DB_NAME\` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;"
  for host in 127.0.0.1 localhost; do
    echo "CREATE USER IF NOT EXISTS '$DB_USER'@'$host' IDENTIFIED BY '$DB_PASSWORD';"
    ((MYSQL_TLS)) && echo "ALTER USER '$DB_USER'@'$host' REQUIRE SSL;"
    echo "GRANT ALL PRIVILEGES ON \`$DB_NAME\`.* TO '$DB_USER'@'$host';"
    # Tests create throwaway databases named spcwatch_<something>.
    echo "GRANT ALL PRIVILEGES ON \`$DB_NAME%\`.* TO '$DB_USER'@'$host';"
  done
  echo "FLUSH PRIVILEGES;"
}

# A MySQL-compatible server we did not start answers on MYSQL_PORT: use it if the
# spcwatch login works, else try to create database and user as root.
mariadb_use_external() {
  say "mariadb: using the server already listening on $HOST:$MYSQL_PORT (not started by services.sh)"
  check mysql --timeout 3 --port "$MYSQL_PORT" >/dev/null 2>&1 && return 0
  local client
  client=$(command -v mariadb || command -v mysql || true)
  if [[ -n $client ]]; then
    provision_sql | "$client" -uroot >/dev/null 2>&1 ||
      provision_sql | "$client" --protocol=tcp -h"$HOST" -P"$MYSQL_PORT" -uroot >/dev/null 2>&1 || true
  fi
  check mysql --timeout 3 --port "$MYSQL_PORT" >/dev/null 2>&1 && return 0
  warn "mariadb: cannot log in as $DB_USER, and root without a password could not create it. Run as an admin:"
  provision_sql | sed "s/IDENTIFIED BY '[^']*'/IDENTIFIED BY '***'/; s/^/    /" >&2
  die "mariadb: the server on $HOST:$MYSQL_PORT has no $DB_USER user (or stop it so services.sh can start its own)"
}

# mysql_check ARGS...: check_services.py mysql against our server (over TLS for the TLS profile).
mysql_check() {
  if ((MYSQL_TLS)); then
    check mysql --port "$MYSQL_PORT" --ssl-ca "$MDB_TLS/ca.pem" "$@"
  else
    check mysql --port "$MYSQL_PORT" "$@"
  fi
}

# Phase 1+2 of `up` for MariaDB (fast enough to run while Kafka boots).
mariadb_up() {
  local pid
  if pid=$(mariadb_pid); then
    MDB_OWNED=1
    say "mariadb: already running (pid $pid)"
    find_mariadb_binaries || die "mariadb: running, but the mariadb client is missing"
  elif ((MYSQL_TLS)) && port_open "$MYSQL_PORT"; then
    die "mariadb: $HOST:$MYSQL_PORT is in use, but not by the TLS server of $(rel "$MDB_DIR"); set SPCWATCH_MYSQL_TLS_PORT"
  elif port_open "$MYSQL_PORT" && check mysql --probe --timeout 5 --port "$MYSQL_PORT" >/dev/null 2>&1; then
    mariadb_use_external
  else
    port_still_busy "$MYSQL_PORT" &&
      die "mariadb: something listens on $HOST:$MYSQL_PORT but is not MySQL-compatible; free the port or set SPCWATCH_MYSQL_PORT"
    mariadb_ensure_installed
    mkdir -p "$MDB_DIR"
    mariadb_init_datadir
    mariadb_start
    MDB_OWNED=1
  fi
  if ((MDB_OWNED)); then
    mariadb_wait_socket
    provision_sql | root_sql || mariadb_fail "could not create database/user $DB_NAME"
  fi
  mysql_check --timeout "$START_TIMEOUT" >/dev/null ||
    mariadb_fail "SELECT 1 as $DB_USER over TCP $HOST:$MYSQL_PORT failed"
}

# ------------------------------------------------------------------------ alertmanager

am_ready() { curl -fsS -m 3 "http://$HOST:$AM_PORT/-/ready" >/dev/null 2>&1; }

alertmanager_ensure_installed() {
  AM_BIN=$(command -v prometheus-alertmanager || command -v alertmanager || true)
  [[ -n $AM_BIN ]] && return 0
  say "alertmanager: installing the Debian package prometheus-alertmanager (first run only)"
  apt_install prometheus-alertmanager
  AM_BIN=$(command -v prometheus-alertmanager || command -v alertmanager || true)
  [[ -n $AM_BIN ]] || die "alertmanager: package installed but neither prometheus-alertmanager nor alertmanager found"
}

alertmanager_fail() {
  tail_log "alertmanager log" "$AM_LOG" "$AM_LOG_FROM"
  die "alertmanager: $*"
}

# Phase 1+2 of `up` for Alertmanager: ours, one already answering, or start it (a single
# instance: clustering off, so nothing listens on the gossip port 9094; with
# SPCWATCH_ALERTMANAGER_CLUSTER_PORT a member of an HA cluster gossiping with SPCWATCH_ALERTMANAGER_PEERS).
alertmanager_up() {
  local pid deadline peer
  local -a cluster=(--cluster.listen-address=) extra=()
  if [[ -n $AM_CLUSTER_PORT ]]; then
    cluster=(--cluster.listen-address="$HOST:$AM_CLUSTER_PORT" --cluster.advertise-address="$HOST:$AM_CLUSTER_PORT")
    for peer in ${AM_PEERS//,/ }; do cluster+=(--cluster.peer="$peer"); done
  fi
  if [[ -n $AM_ARGS ]]; then read -r -a extra <<<"$AM_ARGS"; fi
  command -v curl >/dev/null || die "curl not found (apt-get install curl)"
  if pid=$(alertmanager_pid); then
    AM_OWNED=1
    say "alertmanager: already running (pid $pid)"
  elif port_open "$AM_PORT" && am_ready; then
    say "alertmanager: using the Alertmanager already listening on $HOST:$AM_PORT (not started by services.sh)"
    return 0
  else
    port_still_busy "$AM_PORT" &&
      die "alertmanager: something listens on $HOST:$AM_PORT but is not Alertmanager (an old Kafka controller? it moved to 9095); free the port or set SPCWATCH_ALERTMANAGER_PORT"
    [[ -f $AM_CONFIG ]] || die "alertmanager: config $AM_CONFIG not found"
    alertmanager_ensure_installed
    mkdir -p "$AM_DATA"
    say "alertmanager: starting $(basename "$AM_BIN") on $HOST:$AM_PORT with $(rel "$AM_CONFIG")"
    AM_LOG_FROM=$(file_size "$AM_LOG")
    launch_bg "$AM_PID_FILE" "$AM_LOG" \
      "$AM_BIN" --config.file="$AM_CONFIG" --storage.path="$AM_DATA" \
      --web.listen-address="$HOST:$AM_PORT" --web.external-url="http://$HOST:$AM_PORT" \
      "${cluster[@]}" "${extra[@]}"
    AM_OWNED=1
  fi
  deadline=$((SECONDS + START_TIMEOUT))
  until am_ready; do
    alertmanager_pid >/dev/null || alertmanager_fail "exited during startup (a bad config? amtool check-config $(rel "$AM_CONFIG"))"
    ((SECONDS < deadline)) || alertmanager_fail "no answer on http://$HOST:$AM_PORT/-/ready after ${START_TIMEOUT}s"
    sleep 0.3
  done
}

# ------------------------------------------------------------------------ commands

# want SERVICE LIST...: SERVICE is among the selected ones.
want() {
  local name=$1
  shift
  [[ " $* " == *" $name "* ]]
}

# select_services ARGS...: the services named (validated), default all three.
SELECTED=()
select_services() {
  local name
  SELECTED=()
  for name in "$@"; do
    case "$name" in
      kafka | mariadb | alertmanager) SELECTED+=("$name") ;;
      *) die "unknown service '$name' (kafka, mariadb, alertmanager)" ;;
    esac
  done
  ((${#SELECTED[@]})) || SELECTED=(kafka mariadb alertmanager)
}

print_endpoints() {
  local note
  say "ready:"
  if want kafka "${SELECTED[@]}"; then
    note="(not started by services.sh)"
    ((KAFKA_OWNED)) && note="(log: $(rel "$KAFKA_LOG"))"
    printf '  %-12s %-16s %s\n' kafka "$HOST:$KAFKA_PORT" "$note"
    if ((KAFKA_SECURE)); then
      echo "               SASL_SSL, SCRAM-SHA-512, user $KAFKA_APP_USER (password ***), CA $(rel "$KAFKA_TLS/ca.pem")"
    fi
  fi
  if want mariadb "${SELECTED[@]}"; then
    note="(not started by services.sh)"
    ((MDB_OWNED)) && note="(log: $(rel "$MDB_LOG"))"
    if ((MYSQL_TLS)); then
      printf '  %-12s %s   %s\n' mariadb "mysql+aiomysql://$DB_USER:***@$HOST:$MYSQL_PORT/$DB_NAME?ssl_ca=$MDB_TLS/ca.pem" "$note"
    else
      printf '  %-12s %s   %s\n' mariadb "mysql+aiomysql://$DB_USER:***@$HOST:$MYSQL_PORT/$DB_NAME" "$note"
    fi
  fi
  if want alertmanager "${SELECTED[@]}"; then
    note="(not started by services.sh)"
    ((AM_OWNED)) && note="(log: $(rel "$AM_LOG"), config: $(rel "$AM_CONFIG"))"
    printf '  %-12s %-16s %s\n' alertmanager "http://$HOST:$AM_PORT" "$note"
  fi
}

cmd_up() {
  select_services "$@"
  take_lock
  local started=$SECONDS
  if want kafka "${SELECTED[@]}" || want mariadb "${SELECTED[@]}"; then pick_python; fi
  want kafka "${SELECTED[@]}" && kafka_begin     # starts the broker in the background if needed
  want mariadb "${SELECTED[@]}" && mariadb_up    # meanwhile: MariaDB, fully ready when this returns
  want alertmanager "${SELECTED[@]}" && alertmanager_up
  want kafka "${SELECTED[@]}" && kafka_wait_ready
  print_endpoints
  say "up in $((SECONDS - started))s"
}

# stop_service NAME PID_FUNCTION PID_FILE PORT
stop_service() {
  local name=$1 pid_fn=$2 pid_file=$3 port=$4 pid
  if pid=$($pid_fn); then
    stop_pid "$name" "$pid"
    rm -f "$pid_file"
  elif port_open "$port"; then
    say "$name: the server on $HOST:$port was not started by services.sh, leaving it alone"
  else
    say "$name: not running (nothing to stop)"
  fi
}

cmd_down() {
  local purge=0 names=()
  while (($#)); do
    case "$1" in
      --purge) purge=1 ;;
      -*) die "unknown option for down: $1 (did you mean --purge?)" ;;
      *) names+=("$1") ;;
    esac
    shift
  done
  select_services "${names[@]}"
  take_lock
  want kafka "${SELECTED[@]}" && stop_service kafka kafka_pid "$KAFKA_PID_FILE" "$KAFKA_PORT"
  want mariadb "${SELECTED[@]}" && stop_service mariadb mariadb_pid "$MDB_PID_FILE" "$MYSQL_PORT"
  want alertmanager "${SELECTED[@]}" && stop_service alertmanager alertmanager_pid "$AM_PID_FILE" "$AM_PORT"
  if ((purge)); then
    [[ -n $RUN_DIR && $RUN_DIR != / ]] || die "refusing to purge run dir '$RUN_DIR'"
    want kafka "${SELECTED[@]}" && { say "purging $(rel "$KAFKA_DIR")"; rm -rf "$KAFKA_DIR"; }
    want mariadb "${SELECTED[@]}" && { say "purging $(rel "$MDB_DIR")"; rm -rf "$MDB_DIR" "$RUN_DIR/apt-install.log"; }
    want alertmanager "${SELECTED[@]}" && { say "purging $(rel "$AM_DIR")"; rm -rf "$AM_DIR"; }
  fi
  return 0
}

# status_line NAME PID_FUNCTION PORT LOG READY_FUNCTION: print one line; fail unless it answers.
status_line() {
  local name=$1 pid_fn=$2 port=$3 log=$4 ready=$5 pid
  if pid=$($pid_fn); then
    if $ready; then
      printf '%-12s running   pid %-7s %-16s log: %s\n' "$name" "$pid" "$HOST:$port" "$(rel "$log")"
    else
      printf '%-12s starting  pid %-7s %-16s log: %s\n' "$name" "$pid" "$HOST:$port" "$(rel "$log")"
      return 1
    fi
  elif $ready; then
    printf '%-12s running   %-11s %-16s (not started by services.sh)\n' "$name" "" "$HOST:$port"
  else
    printf '%-12s stopped\n' "$name"
    return 1
  fi
}

kafka_port_open() { port_open "$KAFKA_PORT"; }
mysql_port_open() { port_open "$MYSQL_PORT"; }

cmd_status() {
  local rc=0
  select_services "$@"
  want kafka "${SELECTED[@]}" && { status_line kafka kafka_pid "$KAFKA_PORT" "$KAFKA_LOG" kafka_port_open || rc=1; }
  want mariadb "${SELECTED[@]}" && { status_line mariadb mariadb_pid "$MYSQL_PORT" "$MDB_LOG" mysql_port_open || rc=1; }
  want alertmanager "${SELECTED[@]}" && { status_line alertmanager alertmanager_pid "$AM_PORT" "$AM_LOG" am_ready || rc=1; }
  if ((rc == 0)) && ((${#SELECTED[@]} == 3)); then
    echo "urls:    kafka $HOST:$KAFKA_PORT   mysql+aiomysql://$DB_USER:***@$HOST:$MYSQL_PORT/$DB_NAME   alertmanager http://$HOST:$AM_PORT"
  fi
  return "$rc"
}

# The test suite's other binaries: a real Prometheus scrapes the worker, promtool/amtool check the
# shipped rules and config, headless chromium renders the menu report. `make test` calls this first, so
# a fresh machine needs nothing installed by hand.
cmd_tools() {
  local need=()
  command -v prometheus >/dev/null && command -v promtool >/dev/null || need+=(prometheus)
  { command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null; } &&
    command -v amtool >/dev/null || need+=(prometheus-alertmanager)
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need+=(chromium)
  ((${#need[@]})) || return 0
  say "tools: installing ${need[*]} from Debian packages (first run only)"
  apt_install "${need[@]}"
}

cmd_kafka_user() {
  ((KAFKA_SECURE)) || die "kafka-user works on the secure broker: run it with SPCWATCH_KAFKA_SECURE=1"
  (($# >= 1 && $# <= 3)) || die "usage: SPCWATCH_KAFKA_SECURE=1 SPCWATCH_KAFKA_USER_PASSWORD=... $0 kafka-user NAME [PREFIX [topics|groups]]"
  [[ -n ${SPCWATCH_KAFKA_USER_PASSWORD:-} ]] || die "kafka-user: set SPCWATCH_KAFKA_USER_PASSWORD to the user's password"
  kafka_pid >/dev/null || die "kafka: the secure broker of $(rel "$KAFKA_DIR") is not running (SPCWATCH_KAFKA_SECURE=1 $0 up kafka)"
  secure_admin "$@"
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    purge) cmd_down --purge "$@" ;;
    status) cmd_status "$@" ;;
    tools) mkdir -p "$RUN_DIR" && cmd_tools ;;
    kafka-user) cmd_kafka_user "$@" ;;
    -h | --help | help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
