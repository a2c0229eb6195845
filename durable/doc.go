// Package durable tells a source when a message's readings are durable, so
// that it acknowledges the message to its sender only then (issue 15).
// Two trackers sit between the pipeline and the InfluxDB writer:
//
//   - Log (mode wal, the single-process default) appends the line
//     protocol the pipeline writes to a write-ahead log in a spool
//     directory, fsyncs it once per commit window for every message of the
//     window (group commit), and acknowledges them then; at the next start
//     the log's records not yet confirmed written by the writer (in
//     InfluxDB or its on-disk spool) are written again. InfluxDB keeps one
//     point per series and timestamp, so a record written twice is stored
//     once.
//   - Written (mode written, for cluster mode's JetStream source)
//     acknowledges a message once the writer has written its readings to
//     InfluxDB or to its on-disk spool; the stream redelivers what was not
//     acknowledged.
//
// Both implement the pipeline's Durability seam (pipeline.Options) and its
// Lines; the pipeline calls Await with a message's Ack after Take handled
// it.
package durable
