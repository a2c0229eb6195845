// Package dashboards holds firewatch's Grafana dashboards (*.json), their
// provisioning files (provisioning/) and, as a module of its own, the
// firewatch data source plugin (plugin/). The package has no code: its tests
// check every dashboard against the provisioned data sources, a real
// InfluxDB fed through the real encoder, and the metrics of a real firewatch
// process (docs/grafana.md).
package dashboards
