// Package netbuf wraps a network connection so that reads are buffered and
// writes are coalesced: a burst of small writes (MQTT acknowledgements) goes
// out in one system call after at most a short, bounded delay (FlushDelay,
// at most MaxFlushDelay = 1 ms), and at once when the reading side is about
// to wait for the peer; a write on a quiet connection goes out at once. It sits under the MQTT clients (paho) and the
// embedded broker's client connections, where one write per PUBACK and
// several unbuffered reads per packet used to cost more than the pipeline.
//
// Nothing written is lost or reordered: a write error is sticky (every later
// Write, Flush and Read returns it), closes the connection so that its
// reader learns of it too, and Close flushes what is buffered (bounded by
// CloseFlushTimeout). Buffers are taken from a pool while data is in them
// and given back when they are empty, so an idle connection holds none.
package netbuf
