// Package broker is firewatch's embedded MQTT broker (mochi-mqtt) for the
// zero-setup single-node deployment: its listeners, with bounds on open
// connections and on the time to CONNECT; Auth, which checks each device's
// and gateway's credentials (argon2id secret hashes, secret.go) and topic
// ACLs against the ledger and throttles failed logins; rate-limited logs;
// and InlineSource, the hook that hands the v1 uplink to firewatch in
// process, before the broker acknowledges it to the device. Settings
// (settings.go) is the mqtt section of firewatch's configuration file.
//
// Topic grammar and payload decoding stay in ingest; a deployment with its
// own broker (Mosquitto, EMQX) uses ingest.Source instead and none of this.
package broker
