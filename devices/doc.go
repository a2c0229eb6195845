// Package devices holds the device model of firewatch: the four device kinds,
// the metric catalog with units and physical ranges, the grid hierarchy keyed
// by administrative division codes (统计用区划代码), and the ledger (台账) of
// devices and micro fire stations (微型消防站) loaded from YAML.
//
// Device ids are interned once at load: the hot path passes a small integer
// Index instead of a string.
package devices
