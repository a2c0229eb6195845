#!/usr/bin/env bash
# `make run`: the whole demo on one machine. Starts a local InfluxDB 1.8 with
# its data under var/, a dispatch receiver that prints every alarm push,
# firewatch with its embedded MQTT broker, and a simulated fleet with
# incidents after a short delay. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/influxdb-conf.sh # influxdb_conf

VAR=$PWD/var
BIN=$PWD/bin
INFLUX_PORT=${INFLUX_PORT:-8086}
INFLUX_URL=http://127.0.0.1:$INFLUX_PORT
RECEIVER_ADDR=${RECEIVER_ADDR:-127.0.0.1:8090}
MQTT_LISTEN=${MQTT_LISTEN:-127.0.0.1:1883}
HTTP_LISTEN=${HTTP_LISTEN:-127.0.0.1:9090}
GB26875_LISTEN=${GB26875_LISTEN:-127.0.0.1:9026}
DEVICES=${DEVICES:-300}
RATE=${RATE:-100}
export FIREWATCH_ALARMS_SECRET=${FIREWATCH_ALARMS_SECRET:-demo-secret-change-me}
# API tokens of the demo (issue 16: the console signs in with one).
DEMO_TOKEN=${DEMO_TOKEN:-demo-duty-officer-token}
export FIREWATCH_HTTP_TOKENS=${FIREWATCH_HTTP_TOKENS:-duty:operator:$DEMO_TOKEN}
mkdir -p "$VAR/influxdb"

# Children run in their own sessions (setsid), so that Ctrl-C reaches only this
# script, which stops them in order: a terminal would otherwise signal them all
# at once and InfluxDB could stop before firewatch has flushed to it.
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "stopping..."
  # Reverse order of start: the fleet, firewatch (flushes InfluxDB), the receiver, InfluxDB.
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  echo "stopped. Data stays in var/ (make clean removes it)."
}
trap cleanup INT TERM EXIT

port_busy() { (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }
wait_http() { # url what seconds
  for ((i=0; i<$3*10; i++)); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "error: $2 did not come up at $1 (see var/*.log)" >&2
  return 1
}

for a in "$MQTT_LISTEN" "$HTTP_LISTEN" "$RECEIVER_ADDR" "$GB26875_LISTEN"; do
  if port_busy "$a"; then
    echo "error: $a is already in use (another firewatch or MQTT broker?). Stop it, or set MQTT_LISTEN / HTTP_LISTEN / RECEIVER_ADDR / GB26875_LISTEN." >&2
    exit 1
  fi
done

# InfluxDB: reuse one already answering on the port, else start our own, with
# the configuration of internal/influxd (keep the two in step).
if curl -fsS -o /dev/null "$INFLUX_URL/ping" 2>/dev/null; then
  echo "using the InfluxDB already running at $INFLUX_URL"
else
  influxdb_conf "$VAR" "$INFLUX_PORT" > "$VAR/influxdb.conf" # influxdb-conf.sh
  setsid "$BIN/influxd" run -config "$VAR/influxdb.conf" >"$VAR/influxd.log" 2>&1 &
  pids+=($!)
  wait_http "$INFLUX_URL/ping" InfluxDB 60
fi
curl -fsS -o /dev/null -XPOST "$INFLUX_URL/query" --data-urlencode "q=CREATE DATABASE firewatch"

# The demo ledger (台账): generated once, then yours to edit.
if [ ! -f "$VAR/ledger.yaml" ]; then
  "$BIN/firesim" ledger -devices "$DEVICES" -nbiot "${NBIOT_DEVICES:-6}" -endpoint "http://$RECEIVER_ADDR" -o "$VAR/ledger.yaml"
fi

# firewatch's ledger: the fleet's, with one networked building whose UITD (用户信息传输装置) reports
# its fire alarm controller over GB/T 26875.3 (docs/gb26875.md).
"$BIN/firesim" uitd -ledger "$VAR/ledger.yaml" -o "$VAR/ledger-firewatch.yaml"

# -respond: a simulated station member taps 接警, 出动, 到场 on each fire's responder link (issue 16).
setsid "$BIN/firesim" receiver -addr "$RECEIVER_ADDR" -secret "$FIREWATCH_ALARMS_SECRET" -respond "${RESPOND:-20s}" &
pids+=($!)

# The embedded broker checks credentials (docs/security.md). The simulated
# fleet publishes for all its devices over one connection, as the bridge
# user "firesim", with a secret made for this run; only its hash is given
# to firewatch.
SIM_SECRET=$("$BIN/firewatch" hash-secret -generate | sed -n 1p)
export FIREWATCH_MQTT_BRIDGE_USER=firesim
export FIREWATCH_MQTT_BRIDGE_SECRET_HASH=$(printf '%s\n' "$SIM_SECRET" | "$BIN/firewatch" hash-secret)

# NB-IoT smoke detectors (docs/nbiot.md): some of the ledger's village smoke
# detectors report through emulated CTWing and OneNET pushes (firesim nbiot)
# to firewatch's /nbiot endpoints, with tokens made for this run.
export FIREWATCH_NBIOT_CTWING_TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
export FIREWATCH_NBIOT_CTWING_TENANTS=2000033629 FIREWATCH_NBIOT_CTWING_PRODUCTS=15298770
export FIREWATCH_NBIOT_ONENET_TOKEN=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
export FIREWATCH_NBIOT_ONENET_AES_KEY=$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
# SMS and voice calls to the households (GB/T 45839: two kinds of channel) go to an SMS gateway webhook;
# in the demo the dispatch receiver stands in for it and prints each message.
export FIREWATCH_ALARMS_SMS_GATEWAY=http://$RECEIVER_ADDR/dispatch/sms-gateway
export FIREWATCH_ALARMS_SMS_TEMPLATE='{"to":{{json .Mobile}},"channel":{{json .Channel}},"severity":{{json .Severity}},"message":{{json (printf "%s → %s %s：%s" .Channel .Name .Mobile .Text)}}}'

# A fresh alarm store at each start (KEEP_ALARMS=1 keeps the last run's): a fire stays open until a person
# closes it, so the demo's incidents would otherwise repeat the alarms still open from the last run and push
# nothing new. The last run's alarms and rule state move to var/previous/ (readings, spool and ledger stay).
if [ -z "${KEEP_ALARMS:-}" ] && [ -f "$VAR/alarms.db" ]; then
  rm -rf "$VAR/previous" && mkdir -p "$VAR/previous"
  mv "$VAR"/alarms.db* "$VAR/previous/"
  if [ -f "$VAR/firewatch.state" ]; then mv "$VAR/firewatch.state" "$VAR/previous/"; fi
  echo "the last run's alarms are in var/previous/alarms.db (KEEP_ALARMS=1 keeps them in use)"
fi

setsid "$BIN/firewatch" -ledger "$VAR/ledger-firewatch.yaml" -alarms.db "$VAR/alarms.db" \
  -mqtt.listen "$MQTT_LISTEN" -http.listen "$HTTP_LISTEN" -influx.url "$INFLUX_URL" \
  -gb26875.listen "$GB26875_LISTEN" -gb26875.inspect_every 10m \
  >"$VAR/firewatch.log" 2>&1 &
pids+=($!)
wait_http "http://$HTTP_LISTEN/healthz" firewatch 30

cat <<BANNER

  firewatch is running                                     (Ctrl-C stops everything)
  ---------------------------------------------------------------------------------
  MQTT broker (embedded)   tcp://$MQTT_LISTEN      topics fw/v1/up/#   (docs/mqtt.md)
  GB/T 26875.3 (UITDs)     tcp://$GB26875_LISTEN   (docs/gb26875.md)
  alarms API               http://$HTTP_LISTEN/api/v1/alarms   (curl -H 'Authorization: Bearer $DEMO_TOKEN')
  可视化运管 console         http://$HTTP_LISTEN/console   sign in with the token $DEMO_TOKEN
  responder pages          each push below ends with its link (一键处置：http://$HTTP_LISTEN/r/alm-…#t=…);
                           a simulated member taps 接警/出动/到场 on fires every ${RESPOND:-20s}
  health / metrics         http://$HTTP_LISTEN/healthz   http://$HTTP_LISTEN/metrics
  InfluxDB                 $INFLUX_URL   database firewatch
      curl -G '$INFLUX_URL/query?db=firewatch' --data-urlencode 'q=SELECT count(*) FROM electrical'
  dispatch receiver        http://$RECEIVER_ADDR/dispatch/{station}   (pushes print below)
  NB-IoT pushes            http://$HTTP_LISTEN/nbiot/ctwing/{token}, /nbiot/onenet   (docs/nbiot.md)
      pending (unbound) detectors: http://$HTTP_LISTEN/api/v1/nbiot/pending
  logs                     var/firewatch.log, var/influxd.log
  ---------------------------------------------------------------------------------
  A fleet of $DEVICES simulated devices publishes now; incidents start in about 15 s:
  a fire in 山湾村 of 柳南区 (also seen by its NB-IoT detectors through CTWing and OneNET),
  an overheating charging slot, a hydrant losing pressure; and in about 20 s the UITD of 柳石家园
  reports a smoke detector's fire alarm (3号楼2层走廊) over GB/T 26875.3.

BANNER

setsid "$BIN/firesim" nbiot -ledger "$VAR/ledger.yaml" -url "http://$HTTP_LISTEN" -every 1m \
  -scenario-delay 15s -fire 450204101201 &
pids+=($!)

setsid "$BIN/firesim" uitd -centre "$GB26875_LISTEN" -fire 20s &
pids+=($!)

FIREWATCH_MQTT_PASSWORD=$SIM_SECRET setsid "$BIN/firesim" run -broker "tcp://$MQTT_LISTEN" -username firesim -ledger "$VAR/ledger.yaml" -rate "$RATE" \
  -scenario-delay 15s -scenario fire:450204101201 -scenario charger-overheat -scenario hydrant-pressure-loss &
pids+=($!)
wait "${pids[-1]}"
