#!/usr/bin/env bash
# `make cluster`: cluster mode (docs/cluster.md) on one machine, to watch a
# failover. Starts a 3-node NATS cluster (JetStream, MQTT on each node, the
# uplink's partition mapping), a private PostgreSQL (the shared alarm store),
# InfluxDB, two firewatch instances in cluster mode, a dispatch receiver and a
# simulated fleet publishing to all three nodes; prints which instance owns
# which partitions and the PIDs to kill -9. Ctrl-C stops everything, in
# reverse order. Everything lives under var/cluster/ (make clean removes it).
# The nodes hand every MQTT connection to firewatch's auth callout
# (docs/cluster.md "Credentials"): each simulated device connects with its
# own id and secret (var/cluster/secrets.txt; the ledger holds the hashes).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/influxdb-conf.sh # influxdb_conf

VAR=$PWD/var/cluster
BIN=$PWD/bin
PARTS=${PARTITIONS:-16}
NATS_BASE=${NATS_BASE:-4222}     # client ports 4222-4224
ROUTE_BASE=${ROUTE_BASE:-6222}   # cluster routes 6222-6224
MQTT_BASE=${MQTT_BASE:-1883}     # MQTT listeners 1883-1885
MON_BASE=${MON_BASE:-8222}       # monitoring 8222-8224
PG_PORT=${PG_PORT:-5439}
INFLUX_PORT=${INFLUX_PORT:-8086}
INFLUX_URL=http://127.0.0.1:$INFLUX_PORT
RECEIVER_ADDR=${RECEIVER_ADDR:-127.0.0.1:8090}
HTTP_A=${HTTP_A:-127.0.0.1:9091}
HTTP_B=${HTTP_B:-127.0.0.1:9092}
DEVICES=${DEVICES:-300}
RATE=${RATE:-100}
PG_BIN=${POSTGRES_BIN:-/usr/lib/postgresql/15/bin}
export FIREWATCH_ALARMS_SECRET=${FIREWATCH_ALARMS_SECRET:-demo-secret-change-me}
mkdir -p "$VAR"

pids=()
names=()
pg_started=
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "stopping..."
  # Reverse order of start: the fleet, firewatch b and a, the receiver, InfluxDB, the NATS nodes; PostgreSQL last.
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  if [ -n "$pg_started" ]; then pg stop -m fast >/dev/null 2>&1 || true; fi
  echo "stopped. Data stays in var/cluster/ (make clean removes it)."
}
trap cleanup INT TERM EXIT

port_busy() { (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }
wait_http() { # url what seconds
  for ((i=0; i<$3*10; i++)); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "error: $2 did not come up at $1 (see var/cluster/*.log)" >&2
  return 1
}
start() { # name log command...: start in its own session (Ctrl-C reaches only this script)
  local name=$1 log=$2; shift 2
  setsid "$@" >"$log" 2>&1 &
  pids+=($!)
  names+=("$name")
}
pid_of() { local i; for i in "${!names[@]}"; do [ "${names[i]}" = "$1" ] && echo "${pids[i]}"; done; }

busy=()
for i in 0 1 2; do
  for a in 127.0.0.1:$((NATS_BASE+i)) 127.0.0.1:$((ROUTE_BASE+i)) 127.0.0.1:$((MQTT_BASE+i)) 127.0.0.1:$((MON_BASE+i)); do
    port_busy "$a" && busy+=("$a")
  done
done
for a in 127.0.0.1:$PG_PORT "$RECEIVER_ADDR" "$HTTP_A" "$HTTP_B"; do port_busy "$a" && busy+=("$a"); done
if [ ${#busy[@]} -gt 0 ]; then
  echo "error: ${busy[*]} already in use (make run or another make cluster?). Stop it, or set NATS_BASE / ROUTE_BASE / MQTT_BASE / MON_BASE / PG_PORT / RECEIVER_ADDR / HTTP_A / HTTP_B." >&2
  exit 1
fi

# 0. Credentials (docs/cluster.md "Credentials"): the account key that signs the devices' users (the nodes
#    know its public key as the callout's issuer), firewatch's service user and its password (plain in the
#    demo's node configuration; use a bcrypt hash, nats server passwd, in production).
ACCOUNT=FIREWATCH
SERVICE_USER=firewatch
CALLOUT_SEED=$VAR/callout.nk
ISSUER=$("$BIN/firesim" nkey -o "$CALLOUT_SEED")
if [ ! -s "$VAR/service.pw" ]; then
  (umask 077; od -An -N12 -tx1 /dev/urandom | tr -d ' \n' > "$VAR/service.pw")
fi
export FIREWATCH_CLUSTER_PASSWORD
FIREWATCH_CLUSTER_PASSWORD=$(cat "$VAR/service.pw")

# 1. NATS: three nodes, JetStream, MQTT, the partition mapping, as internal/testenv starts them for the tests.
# mappings P: the block of cluster.ServerMappings(P) (cluster/script_test.go keeps the two the same).
mappings() {
  cat <<MAP
mappings {
  "fw.v1.up.*.*": "fwp.{{partition($1,1)}}.fw.v1.up.{{wildcard(1)}}.{{wildcard(2)}}"
  "fw.v1.up.*.*.*": "fwp.{{partition($1,2)}}.fw.v1.up.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}"
}
MAP
} # end of mappings
MAPPINGS=$(mappings "$PARTS")
routes=""
for i in 0 1 2; do routes+="    nats-route://127.0.0.1:$((ROUTE_BASE+i))"$'\n'; done
NATS_URLS="" MQTT_URLS="" FLEET_BROKERS=""
for i in 0 1 2; do
  n=n$((i+1))
  mkdir -p "$VAR/$n"
  (umask 077; cat > "$VAR/$n.conf") <<CONF
server_name: $n
listen: 127.0.0.1:$((NATS_BASE+i))
http: 127.0.0.1:$((MON_BASE+i))
jetstream {
  store_dir: "$VAR/$n"
  max_memory_store: 256MB
  max_file_store: 4GB
}
cluster {
  name: firewatch
  listen: 127.0.0.1:$((ROUTE_BASE+i))
  routes: [
$routes  ]
}
mqtt {
  listen: 127.0.0.1:$((MQTT_BASE+i))
}
accounts {
  $ACCOUNT {
    jetstream: enabled
    users: [ { user: $SERVICE_USER, password: "$FIREWATCH_CLUSTER_PASSWORD" } ]
$MAPPINGS
  }
}
authorization {
  auth_callout {
    issuer: $ISSUER
    auth_users: [ $SERVICE_USER ]
    account: $ACCOUNT
  }
}
CONF
  start "nats-$n" "$VAR/nats-$n.log" "$BIN/nats-server" -c "$VAR/$n.conf"
  NATS_URLS+="${NATS_URLS:+,}nats://127.0.0.1:$((NATS_BASE+i))"
  MQTT_URLS+="${MQTT_URLS:+,}tcp://127.0.0.1:$((MQTT_BASE+i))"
done
# The fleet's broker list; with -secrets each device starts at another node of it (firesim run).
FLEET_BROKERS=tcp://127.0.0.1:$((MQTT_BASE+1)),tcp://127.0.0.1:$((MQTT_BASE+2)),tcp://127.0.0.1:$MQTT_BASE
for i in 0 1 2; do wait_http "http://127.0.0.1:$((MON_BASE+i))/healthz?js-enabled-only=true" "nats-server n$((i+1))" 60; done

# 2. PostgreSQL: a private cluster under var/cluster/pg, trust on loopback (as internal/testenv).
pg() { # pg_ctl args, as the user postgres when root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$VAR/pg" "$@"; else "$PG_BIN/pg_ctl" -D "$VAR/pg" "$@"; fi
}
if [ ! -f "$VAR/pg/PG_VERSION" ]; then
  mkdir -p "$VAR/pg"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$VAR/pg"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$VAR/pg" -U fw -A trust -E UTF8 --locale=C >"$VAR/pg-initdb.log" 2>&1
  else
    "$PG_BIN/initdb" -D "$VAR/pg" -U fw -A trust -E UTF8 --locale=C >"$VAR/pg-initdb.log" 2>&1
  fi
fi
[ "$(id -u)" = 0 ] && touch "$VAR/pg.log" && chown postgres: "$VAR/pg.log"
pg -l "$VAR/pg.log" -w -t 60 -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k /tmp" start >/dev/null
pg_started=1
# A fresh alarm store at each start (KEEP_ALARMS=1 keeps the last run's): the incidents of the demo would
# otherwise repeat the alarms still open from the last run and push nothing new.
if [ -z "${KEEP_ALARMS:-}" ]; then
  "$PG_BIN/dropdb" -h 127.0.0.1 -p "$PG_PORT" -U fw --if-exists firewatch
  rm -f "$VAR"/firewatch-?.state
fi
"$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U fw -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='firewatch'" | grep -q 1 ||
  "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U fw firewatch
PG_DSN="postgres://fw@127.0.0.1:$PG_PORT/firewatch?sslmode=disable"

# 3. InfluxDB, as make run starts it (reuse one already answering on the port).
if curl -fsS -o /dev/null "$INFLUX_URL/ping" 2>/dev/null; then
  echo "using the InfluxDB already running at $INFLUX_URL"
else
  mkdir -p "$VAR/influxdb"
  influxdb_conf "$VAR" "$INFLUX_PORT" > "$VAR/influxdb.conf" # influxdb-conf.sh
  start influxd "$VAR/influxd.log" "$BIN/influxd" run -config "$VAR/influxdb.conf"
  wait_http "$INFLUX_URL/ping" InfluxDB 60
fi
curl -fsS -o /dev/null -XPOST "$INFLUX_URL/query" --data-urlencode "q=CREATE DATABASE firewatch"

# 4. The ledger (generated once) and the dispatch receiver.
# Each device has a secret of its own: its argon2id hash in the ledger, the secret in secrets.txt for the fleet.
if [ ! -f "$VAR/ledger.yaml" ] || [ ! -f "$VAR/secrets.txt" ]; then
  "$BIN/firesim" ledger -devices "$DEVICES" -nbiot 0 -endpoint "http://$RECEIVER_ADDR" -o "$VAR/ledger.yaml" \
    -secrets "$VAR/secrets.txt"
fi
start receiver "$VAR/receiver.log" "$BIN/firesim" receiver -addr "$RECEIVER_ADDR" -secret "$FIREWATCH_ALARMS_SECRET"

# 5. Two firewatch instances in cluster mode sharing the alarm store; a message is acknowledged on the
#    stream once its readings are in InfluxDB or the instance's spool (durability.mode written).
instance_args() { # name http address → the arguments of instance name
  printf '%q ' "$BIN/firewatch" -ledger "$VAR/ledger.yaml" \
    -cluster.enabled -cluster.urls "$NATS_URLS" -cluster.mqtt "$MQTT_URLS" -cluster.instance "$1" \
    -cluster.partitions "$PARTS" -cluster.max_mb 512 -durability.mode written \
    -cluster.user "$SERVICE_USER" -cluster.callout_seed "$CALLOUT_SEED" -cluster.callout_account "$ACCOUNT" \
    -alarms.db "$PG_DSN" -influx.url "$INFLUX_URL" -influx.spool_dir "$VAR/spool-$1" \
    -state.file "$VAR/firewatch-$1.state" -http.listen "$2" -log.level info
}
for inst in a b; do
  if [ $inst = a ]; then http=$HTTP_A; else http=$HTTP_B; fi
  eval "args=($(instance_args "$inst" "$http"))"
  start "firewatch-$inst" "$VAR/firewatch-$inst.log" "${args[@]}"
  wait_http "http://$http/healthz" "firewatch $inst" 60
done
# A newcomer's command line, for the banner: the balance gives it its share of the partitions.
HTTP_C=${HTTP_C:-127.0.0.1:9093}
NEWCOMER="FIREWATCH_CLUSTER_PASSWORD=\$(cat $VAR/service.pw) FIREWATCH_ALARMS_SECRET=$(printf %q "$FIREWATCH_ALARMS_SECRET") \\
        $(instance_args c "$HTTP_C")>> $VAR/firewatch-c.log 2>&1"

# 6. The fleet, over MQTT QoS 1 to the nodes (failing over between them).
#    Each device on its own connection with its own credentials, admitted by the callout; each answers the
#    linkage commands (cut_power) sent to it.
start fleet "$VAR/fleet.log" "$BIN/firesim" run -broker "$FLEET_BROKERS" -ledger "$VAR/ledger.yaml" -rate "$RATE" \
  -secrets "$VAR/secrets.txt" \
  -scenario-delay 20s -scenario fire:450204101201 -scenario charger-overheat -scenario hydrant-pressure-loss

# Which instance owns which partitions: firewatch_cluster_partition_owned on each one's /metrics.
owned() { # http address → the partitions it owns, space-separated
  curl -fsS "http://$1/metrics" 2>/dev/null | sed -n 's/^firewatch_cluster_partition_owned{partition="\([0-9]*\)"} 1$/\1/p' | sort -n | tr '\n' ' '
}
for ((i=0; i<100; i++)); do
  a=$(owned "$HTTP_A"); b=$(owned "$HTTP_B")
  [ $(( $(wc -w <<<"$a") + $(wc -w <<<"$b") )) -ge "$PARTS" ] && break
  sleep 0.2
done
cat <<BANNER

  firewatch cluster mode is running                              (Ctrl-C stops everything)
  ---------------------------------------------------------------------------------------
  NATS nodes (JetStream R3, MQTT)  PIDs n1 $(pid_of nats-n1), n2 $(pid_of nats-n2), n3 $(pid_of nats-n3)
      clients $NATS_URLS
      MQTT    $MQTT_URLS   (each device starts at another node: a third of the fleet on each)
      monitor http://127.0.0.1:$MON_BASE/jsz?streams=true   (stream FW_UPLINK, $PARTS partitions)
  firewatch a  PID $(pid_of firewatch-a)   http://$HTTP_A   owns partitions: ${a:-(none yet)}
  firewatch b  PID $(pid_of firewatch-b)   http://$HTTP_B   owns partitions: ${b:-(none yet)}
      ownership now:  curl -s http://$HTTP_A/metrics | grep 'partition_owned.* 1\$'
  PostgreSQL (shared alarm store)  $PG_DSN   data var/cluster/pg
  InfluxDB   $INFLUX_URL   database firewatch
  receiver   http://$RECEIVER_ADDR/dispatch/{station}   pushes in var/cluster/receiver.log
  ---------------------------------------------------------------------------------------
  Watch a failover (in another terminal):
      tail -f var/cluster/firewatch-a.log var/cluster/firewatch-b.log var/cluster/receiver.log | grep -E 'partition|dispatch|→'
      kill -9 $(pid_of firewatch-a)     # instance a: b logs "partition acquired" for a's partitions within ~2-3 s
      kill -9 $(pid_of nats-n2)     # NATS node n2: its devices reconnect to n3 or n1, the stream keeps its quorum
  A newcomer (stop it with Ctrl-C before this script): instance c takes its share of the partitions, from b
  (or a) within about 20 s, with their rule state (the partitions' checkpoints); kill -9 it to fail back:
      $NEWCOMER
      curl -s http://$HTTP_C/metrics | grep 'partition_owned.* 1\$'
  Credentials: the nodes hand every MQTT connection to firewatch's auth callout (issuer $ISSUER);
  each device connects with its own id and secret (var/cluster/secrets.txt, hashes in the ledger);
  anything else is refused (the node closes the connection), e.g.
      bin/firesim run -broker tcp://127.0.0.1:$MQTT_BASE -ledger var/cluster/ledger.yaml -username x -password y -count 1
  A fleet of $DEVICES devices publishes now ($RATE messages/s); incidents start in about 20 s
  (a fire, an overheating charger, a hydrant losing pressure): their pushes arrive at the receiver
  whichever instance owns the partition. Logs: var/cluster/*.log

BANNER

# Print each push as it arrives, as make run does.
tail -n +1 -f "$VAR/receiver.log" &
tailpid=$!
rc=0
wait "$(pid_of fleet)" || rc=$?
kill "$tailpid" 2>/dev/null || true
if [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ]; then
  echo "the fleet stopped (exit $rc); the end of var/cluster/fleet.log:" >&2
  tail -n 5 "$VAR/fleet.log" >&2
fi
