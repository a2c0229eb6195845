// Package alarms turns rule events into alarms and gets them to the people
// who respond. An alarm is raised once per (device, rule, channel) while the
// rule fires, stored in an embedded SQLite database (or PostgreSQL) together
// with its push in one transaction (a durable outbox), and pushed as signed
// JSON to the dispatch webhook (联勤联调) of the covering micro fire station
// (微型消防站), and for fires also to the fire rescue brigade (消防救援大队).
// A fire is never closed automatically. The Manager also serves the alarms
// over HTTP; README.md describes the push contract.
//
// The package is in four parts, each in its own files:
//
//   - The lifecycle core, which decides: manager.go (Config, Manager, Run),
//     settings.go (the alarms section of firewatch's configuration file),
//     events.go (rule events to alarms), lifecycle.go (the state machine),
//     transition.go (changes made by people, closing pushes), escalation.go,
//     flap.go, storm.go (incidents), routing.go (station readiness),
//     linkage.go (commands to devices), park.go (pushes refused for good),
//     digest.go, response.go, alarm.go (the types), metrics.go, and
//     queue.go (what a change queues for delivery, in its transaction).
//   - The store (store*.go), which remembers: every SQL statement, as a
//     named method of queries run on a pool or in a storeTx; schema
//     migrations; PostgreSQL.
//   - Delivery (delivery_*.go), which sends: the outbox workers, the push
//     body and its dispatcher text, signatures, WeCom and DingTalk robots,
//     the MQTT console fan-out.
//   - The HTTP API (api*.go): handlers, bearer tokens and roles,
//     response-time statistics.
//
// The core calls the store and queues pushes for delivery in the same
// transaction; delivery reports back what became of a push (delivered:
// the alarm is pushed; refused for good: park.go).
package alarms
