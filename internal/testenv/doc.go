// Package testenv starts real services for integration tests: a Mosquitto
// broker and an InfluxDB 1.8 server, each on free loopback ports with its
// state under t.TempDir(), stopped when the test ends.
//
// A test that needs a service the machine lacks is skipped with the reason,
// except under CI=true, where a missing service fails the test: CI must run
// every integration test, never silently skip one.
package testenv
