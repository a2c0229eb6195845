// Package registry keeps the device registry (台账: places, micro fire
// stations, gateways, devices) in the store, with an audit history of every
// change, and serves the admin API that changes it while firewatch runs.
// The YAML ledger stays an import/export format (docs/registry.md).
package registry
