// Package influx is the InfluxDB sink of firewatch: an Encoder that turns
// readings and alarm transitions into line protocol without allocating, and
// a Writer that batches the lines and sends them through the v2 write API
// (InfluxDB 1.8's compatibility endpoint, 2.x or 3.x), retrying while
// InfluxDB is down and counting every line it has to give up.
//
// The schema is one measurement per device kind, tagged with the device and
// its grid codes, with one float field per metric; alarm transitions go to
// the measurement alarms for Grafana annotations. See README.md.
package influx
