# Sourced by run.sh and cluster.sh: the configuration of the local InfluxDB 1.8 both start, the same as
# internal/influxd's (keep the two in step). influxdb_conf DIR PORT prints it for data under DIR/influxdb
# and the HTTP API on 127.0.0.1:PORT (the RPC port is PORT+2).
influxdb_conf() {
  cat <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$(($2 + 2))"
[meta]
  dir = "$1/influxdb/meta"
[data]
  dir = "$1/influxdb/data"
  wal-dir = "$1/influxdb/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:$2"
  flux-enabled = true
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
CONF
}
