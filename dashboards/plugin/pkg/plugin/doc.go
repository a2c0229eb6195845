// Package plugin is the backend of the firewatch Grafana data source: it
// turns firewatch's HTTP API (docs/api.md) into data frames for alarms,
// devices, the per-grid risk colours of 三色预警 and the response times of
// micro fire stations, and streams alarm transitions to Grafana Live.
// docs/grafana.md describes the queries and the risk rule.
package plugin
