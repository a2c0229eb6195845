package influx

// The writer's side of durable acknowledgement (package durable, issue 15):
// which batches are durable, and a signal when that changes.

// Mark returns the sequence number the batch being filled will get: every
// line written before the call is in a batch numbered at most Mark.
func (w *Writer) Mark() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nextSeq
}

// Durable returns seq such that every batch numbered up to seq is durable
// (written to InfluxDB, taken by the on-disk spool, or refused by InfluxDB
// as invalid and parked), and a channel closed at the next change.
//
// A batch dropped because the memory queue overflowed (no spool, or the
// spool failing) counts as done too: the writer's drop policy, counted in
// firewatch_influx_dropped_lines_total. A batch dropped at shutdown (the
// deadline passed without a spool) does not: from it on Durable stands
// still, so that a write-ahead log keeps those lines for the next start.
func (w *Writer) Durable() (seq uint64, changed <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	seq = w.unfinishedLocked() - 1
	if w.lostAt != 0 {
		seq = min(seq, w.lostAt-1)
	}
	return seq, w.progress
}

// loseLocked freezes Durable where it stands: what is unfinished now is
// being dropped at shutdown.
func (w *Writer) loseLocked() {
	if w.lostAt == 0 {
		w.lostAt = max(w.unfinishedLocked(), 1)
	}
}
