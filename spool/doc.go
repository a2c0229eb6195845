// Package spool is a durable on-disk FIFO of opaque records for
// store-and-forward: a producer appends, a forwarder peeks a batch, sends
// it, and commits it only after the far side has acknowledged it. Records
// live in segment files; the size is bounded, and when the spool is full a
// drop policy keeps priority records (alarms, events) and the newest data.
// It survives process restarts and power cuts within its fsync policy.
// firegate uses it for MQTT batches; firewatch can use it for InfluxDB
// batches.
//
// # On disk
//
// A spool directory holds segment files named by a sequence number
// (00000000000000000001.seg, …) and one "ack" file with the position of the
// first unacknowledged record (segment number and offset). A record is a
// 4-byte little-endian length, a 4-byte CRC-32C of the payload, then the
// payload. A torn or corrupt tail (power cut during a write) is found by
// its length or CRC at Open and truncated away; records before it are kept.
//
// # fsync policy
//
// With Options.SyncEvery 0 (the default) every Append and AppendBatch is
// fsynced before it returns: a record the caller saw appended survives a
// power cut. A positive SyncEvery syncs at most that often (and at Close),
// trading the last SyncEvery of records on a power cut for fewer writes to
// flash. The ack file is rewritten (write, fsync, rename) on Commit at most
// every AckEvery; after a crash, records acknowledged since the last ack
// write are delivered again, so consumers must tolerate duplicates
// (firewatch does: a replayed reading carries its original timestamp and
// sequence number, and InfluxDB stores the same point once).
//
// # Drop policy
//
// The spool never holds more than Options.MaxBytes of segment files (plus
// one segment of slack). When an append would exceed it, the oldest
// segment that is not being read is removed; before removal, records for
// which Options.Keep returns true (alarms, events) are copied to the tail,
// so they survive with a later position. Data records in that segment are
// dropped and counted (Dropped). If only kept records remain, the oldest of
// them go too: the bound on disk use wins over everything.
package spool
