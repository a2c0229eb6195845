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
// payload; a record is never empty, so a zero-filled tail is not read as
// records. A torn or corrupt tail (power cut during a write) is found by
// its length or CRC at Open and truncated away; records before it are kept.
// A corrupt region in the middle (a flipped bit) is skipped up to the next
// record whose length and CRC check, and the segment rewritten without it;
// both are counted in Stats.Corrupt. Peek checks every record's CRC too and
// repairs a segment the same way when one fails.
//
// # Faults
//
// All file operations go through Options.FS; spooltest.FS injects faults.
// A failed or short write is cut off (or, if that fails too, the segment
// is sealed and the next record starts a new one), so no partial record
// stays between good ones. A failed fsync seals the segment and rewrites
// it at the next sync, since a second fsync may succeed without writing
// the lost pages. A failed rotation keeps the old segment as the writer. A
// read error is retried; Peek returns it to the caller after three tries,
// and sets the segment's unreadable part aside (counted) only when Peeks
// kept failing for Options.UnreadableAfter (and at least 20 times). Failed operations are counted in Stats.Errors and
// Stats.Healthy is false until the next one succeeds.
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
// segment that is not being read and holds data records is compacted in
// place to the records for which Options.Keep returns true (alarms,
// events): written to a new file, fsynced and renamed over it, so kept
// records keep their order relative to each other and to everything
// else. Its data records are dropped and counted (Dropped). If only kept
// records remain, the oldest segment goes whole: the bound on disk use
// wins over everything.
package spool
