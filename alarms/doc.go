// Package alarms turns rule events into alarms and gets them to the people
// who respond. An alarm is raised once per (device, rule, channel) while the
// rule fires, stored in an embedded SQLite database together with its push
// in one transaction (a durable outbox), and pushed as signed JSON to the
// dispatch webhook (联勤联调) of the covering micro fire station
// (微型消防站), and for fires also to the fire rescue brigade (消防救援大队).
// A fire is never closed automatically. The Manager also serves the alarms
// over HTTP; README.md describes the push contract.
package alarms
