package pipeline

import (
	"errors"
	"time"
)

// The restart checkpoint claims only messages that may be acknowledged
// (issue 15, docs/decisions.md "the restart checkpoint claims only durable
// messages"). Its snapshot holds every message handled so far: their
// digests in the duplicate windows, the rule transitions they caused. A
// message handled but not yet acknowledged (its readings waiting for the
// write-ahead log's group commit, its alarm events for the store) is sent
// again by its device if firewatch dies before the acknowledgement; had the
// checkpoint claimed it, the next run would drop the resend as a duplicate
// (its readings never written) or see its alarm as already raised (its
// event never stored). So the file is renamed into place only once every
// message of its snapshot may be acknowledged: the readings written before
// the snapshot are durable (Durability.Await) and the events submitted
// before the file was written stored (Alarms.Sync: the rule transitions of
// the snapshot and the liveness transitions the file holds). The wait for
// the readings runs while the file is written, off the hot path, and both
// waits are bounded: a checkpoint whose messages do not become durable
// within checkpointWait is skipped (the last one stays).

// checkpointWait bounds a checkpoint's wait for its messages to become
// durable (a group commit of the write-ahead log: milliseconds; mode
// written: influx.flush_interval and a write; the alarm store: a commit).
const checkpointWait = 30 * time.Second

// errCheckpointNotDurable is a checkpoint skipped because messages of its
// snapshot did not become acknowledgeable in time.
var errCheckpointNotDurable = errors.New("messages of the snapshot not durable in time (write-ahead log or alarm store stalled): checkpoint skipped, the last one stays")

// barrier returns a channel closed once every line written before the
// call is durable (Durability.Await). Call it right after the snapshot.
func (c *checkpoint) barrier() <-chan struct{} {
	done := make(chan struct{})
	if d := c.pipe.durable; d != nil {
		d.Await(func() { close(done) })
	} else {
		close(done)
	}
	return done
}

// awaitDurable waits, for at most c.wait from now, for ready (barrier) and
// then for the alarm store to have stored every event submitted so far
// (Alarms.Sync): called once the file is written, so that the events of
// the liveness transitions the file holds are covered too. At the last
// checkpoint (c.final: the sources stopped, every Take returned), an error
// of the alarm store is no reason to skip it: a message whose events were
// not stored was not acknowledged, and Take made the engine forget its
// devices before the snapshot (notStored).
func (c *checkpoint) awaitDurable(ready <-chan struct{}) error {
	t := time.NewTimer(c.wait)
	defer t.Stop()
	select {
	case <-ready:
	case <-t.C:
		return errCheckpointNotDurable
	}
	a := c.pipe.alarms
	if a == nil {
		return nil
	}
	stored := make(chan error, 1)
	go func() { stored <- a.Sync() }()
	select {
	case err := <-stored:
		if err != nil && !c.final {
			return errors.Join(errCheckpointNotDurable, err)
		}
		return nil
	case <-t.C:
		return errCheckpointNotDurable
	}
}
