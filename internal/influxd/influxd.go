// Package influxd holds the configuration of a local InfluxDB 1.8 on
// loopback, as the tests (internal/testenv) and the bench (firesim bench)
// run it; scripts/influxdb-conf.sh writes the same for make run and make cluster.
package influxd

import (
	"path/filepath"
	"strconv"
)

// Config returns an influxd configuration with its data under dir, the
// HTTP API with Flux on 127.0.0.1:httpPort and the RPC service (whose
// default, 8088 on every interface, would clash and expose it) on
// 127.0.0.1:rpcPort.
func Config(dir string, httpPort, rpcPort int) string {
	q := strconv.Quote
	return `reporting-disabled = true
# The RPC service (backup/restore) defaults to port 8088 on all interfaces.
bind-address = ` + q("127.0.0.1:"+strconv.Itoa(rpcPort)) + `

[meta]
  dir = ` + q(filepath.Join(dir, "meta")) + `
  logging-enabled = false

[data]
  dir = ` + q(filepath.Join(dir, "data")) + `
  wal-dir = ` + q(filepath.Join(dir, "wal")) + `
  query-log-enabled = false

[http]
  bind-address = ` + q("127.0.0.1:"+strconv.Itoa(httpPort)) + `
  flux-enabled = true
  log-enabled = false
  pprof-enabled = false

[monitor]
  store-enabled = false

[continuous_queries]
  enabled = false

[logging]
  level = "info"
`
}
