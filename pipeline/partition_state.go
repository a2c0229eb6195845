package pipeline

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// State that moves with a partition (cluster mode, issue 15,
// docs/cluster.md): the owner of a partition checkpoints the rule state
// and liveness of its devices (SnapshotPartition), together with the stream
// position up to which it handled the partition (kept by package cluster);
// the next owner restores them and replays the messages the previous owner
// handled after the checkpoint through the rules only, events discarded
// (ResumePartition): the previous owner stored those events before it
// acknowledged the messages. A `for` pending on the dead owner then
// completes at its original time, an alarm it raised is neither raised
// twice nor left open when its condition ends.

// partitionMagic heads a partition checkpoint: then the length of the rule
// state (8 bytes, little endian), the rule state (rules.Snapshot.WriteTo of
// the partition's devices, by id) and the liveness of the same devices
// (devices.Liveness.WriteStateOf).
const partitionMagic = "FWPART01"

// PartitionState holds the buffers of one partition's checkpoints, reused
// from one to the next. Not safe for concurrent use.
type PartitionState struct {
	snap *rules.Snapshot
	buf  bytes.Buffer
}

// SnapshotPartition encodes the rule state and liveness of devs. The rule
// state is copied between two messages (under the pipeline's lock, a copy
// of the devices' state); it is encoded after. Call it between the
// partition's messages, so that the checkpoint holds exactly what the
// messages handled so far made. The returned bytes are st's until its next
// use.
func (p *Pipeline) SnapshotPartition(devs []devices.Index, st *PartitionState) ([]byte, error) {
	p.mu.Lock()
	l := p.ledger
	st.snap = p.eng.SnapshotDevices(st.snap, l, devs)
	p.mu.Unlock()
	st.buf.Reset()
	st.buf.WriteString(partitionMagic)
	st.buf.Write(make([]byte, 8))
	if _, err := st.snap.WriteTo(&st.buf); err != nil {
		return nil, err
	}
	b := st.buf.Bytes()
	binary.LittleEndian.PutUint64(b[len(partitionMagic):], uint64(len(b)-len(partitionMagic)-8))
	if err := p.live.WriteStateOf(&st.buf, l, devs, time.Now().UnixMilli()); err != nil {
		return nil, err
	}
	return st.buf.Bytes(), nil
}

// Replayed is a message the previous owner of a partition handled after
// its checkpoint, replayed by the next owner through the rules only.
type Replayed struct {
	Topic   string
	Payload []byte
	// Recv is when the message arrived (Unix ms: the stream's time of it),
	// the receive time it is evaluated at.
	Recv int64
}

// ResumePartition gives devs (a partition this instance acquires, while
// Owns is still false for them and before their messages) the state of the
// checkpoint data (SnapshotPartition of the previous owner), then replays
// the messages replay yields through the rules, discarding their events.
// It returns commit, to be called once Owns is true for devs and before
// their next message: it sets their liveness (last sightings of the
// checkpoint and the replay; offline alarms open in the store). On an
// error nothing of the checkpoint is kept (the devices' rule state is
// forgotten) and the caller falls back to Adopt.
func (p *Pipeline) ResumePartition(ctx context.Context, devs []devices.Index, data []byte,
	replay func(yield func(Replayed) error) error) (commit func(), restored int, err error) {
	if len(data) < len(partitionMagic)+8 || string(data[:len(partitionMagic)]) != partitionMagic {
		return nil, 0, errors.New("not a partition checkpoint")
	}
	n := binary.LittleEndian.Uint64(data[len(partitionMagic):])
	body := data[len(partitionMagic)+8:]
	if n > uint64(len(body)) {
		return nil, 0, errors.New("partition checkpoint truncated")
	}
	p.mu.Lock()
	l := p.ledger
	p.mu.Unlock()
	lives, err := devices.ReadLivenessStateOf(bytes.NewReader(body[n:]), l)
	if err != nil {
		return nil, 0, err
	}
	p.mu.Lock()
	restored, err = p.eng.RestoreDevices(bytes.NewReader(body[:n]), p.ledger, devs)
	p.mu.Unlock()
	if err != nil {
		return nil, 0, err
	}
	seen := make(map[devices.Index]int64)
	if err := replay(func(m Replayed) error {
		p.mu.Lock()
		p.replayOne(m.Topic, m.Payload, m.Recv, seen)
		p.mu.Unlock()
		return ctx.Err()
	}); err != nil {
		p.mu.Lock()
		p.eng.Forget(devs)
		p.mu.Unlock()
		return nil, 0, fmt.Errorf("replay: %w", err)
	}
	// What this instance knew of the devices' liveness is stale: a fresh
	// grace for each, without an event (as Adopt), until commit sets what
	// the previous owner knew.
	now := p.clock.now()
	for _, d := range devs {
		p.live.Seen(d, now)
	}
	p.live.Tick(now)
	open := make(map[devices.Index]int64)
	mine := make(map[devices.Index]bool, len(devs))
	for _, d := range devs {
		mine[d] = true
	}
	var openErr error
	if p.alarms != nil {
		openErr = p.alarms.OpenAlarms(ctx, rules.SeverityOffline, func(o OpenAlarm) {
			if d, ok := l.LookupID(o.Device); ok && mine[d.Index] {
				if _, dup := open[d.Index]; !dup {
					open[d.Index] = o.Since.UnixMilli()
				}
			}
		})
	}
	if err := openErr; err != nil {
		p.log.Warn("cluster mode: open offline alarms of the partition not read; they clear by hand", "err", err)
	}
	commit = func() {
		now := p.clock.now()
		for _, d := range devs {
			r := lives[d]
			last, sighted, off := r.Since, r.Seen, r.Offline
			if at, ok := seen[d]; ok && at > last {
				// It spoke after the checkpoint: back, if it was offline.
				last, sighted, off = at, true, false
			}
			if since, ok := open[d]; ok {
				// The alarm store has the last word on an open offline
				// alarm: offline, and back (cleared at the next tick) if
				// it spoke after the alarm's last sighting.
				p.live.MarkOffline(d, since)
				if sighted && last > since {
					p.live.SeenAt(d, last, now)
				}
				continue
			}
			if last > 0 {
				p.live.Resume(d, last, sighted, off, now)
			}
		}
	}
	return commit, restored, nil
}

// replayOne is handleFrom for a message the previous owner of its
// partition handled already, at its receive time recv: the rule engine
// admits and evaluates its readings so that its state is what the
// previous owner's was, and every event is discarded (the previous owner
// stored them before it acknowledged the message). Nothing is written,
// counted or told to liveness; the device's sightings go to seen. p.mu is
// held.
func (p *Pipeline) replayOne(topic string, payload []byte, recv int64, seen map[devices.Index]int64) {
	if strings.HasPrefix(topic, stationTopic) {
		return
	}
	if _, ok := ackDevice(topic); ok {
		return
	}
	if e := p.next.Swap(nil); e != nil {
		p.adoptEngine(e)
	}
	sight := func(d devices.Index, at int64) {
		if at > seen[d] {
			seen[d] = at
		}
	}
	msgs, _ := p.dec.Decode(topic, payload, recv)
	for i := range msgs {
		m := &msgs[i]
		metrics, values := p.dec.Values(m)
		if len(metrics) == 0 {
			if !m.Batch {
				sight(m.Device.Index, recv)
			} else if at := heartbeatAt(m, false, recv); at > 0 {
				sight(m.Device.Index, at)
			}
			continue
		}
		v, _ := p.eng.AdmitStamp(m.Device.Index, p.stampOf(m), p.events[:0])
		if !m.Batch {
			sight(m.Device.Index, recv)
		} else if at := relayedAt(m, v, false, recv); at > 0 {
			sight(m.Device.Index, at)
		}
		if v.Admission == rules.Duplicate {
			continue
		}
		r := devices.Reading{Time: v.Time, Seq: m.Seq, Device: m.Device.Index, Kind: m.Device.Kind, Channel: m.Channel}
		for j, metric := range metrics {
			r.Metric, r.Value = metric, values[j]
			p.events = p.eng.Eval(r, v.Admission, p.events[:0])
		}
	}
	p.events = p.events[:0]
}

// TakeHandled is Take for a message that the previous owner of its
// partition handled and did not acknowledge, and whose effect on the rule
// state and liveness the partition's checkpoint already holds (its stream
// sequence at or before the checkpoint's): its readings are written again
// (the previous owner's may not have become durable; InfluxDB keeps one
// point per time), and nothing is evaluated, so that the rule engine does
// not drop it as a duplicate of itself nor raise its events a second time
// (the previous owner stored them before it took the next message). recv
// is when the message arrived (the stream's time of it): the time of
// readings without a believable ts. Station reports and command
// acknowledgements go through Take.
func (p *Pipeline) TakeHandled(m Message, recv int64) error {
	if strings.HasPrefix(m.Topic, stationTopic) {
		return p.Take(m)
	}
	if _, ok := ackDevice(m.Topic); ok {
		return p.Take(m)
	}
	p.mu.Lock()
	msgs, _ := p.dec.Decode(m.Topic, m.Payload, recv)
	p.buf = p.buf[:0]
	n := 0
	for i := range msgs {
		dm := &msgs[i]
		metrics, values := p.dec.Values(dm)
		if len(metrics) == 0 {
			continue
		}
		n += len(metrics)
		p.buf = p.enc.AppendLine(p.buf, dm.Device.Index, dm.Channel, metrics, values, dm.Time)
	}
	if n > 0 {
		p.lines.Write(p.buf)
		p.stats.Readings.Add(float64(n))
	}
	p.mu.Unlock()
	p.ackDurable(m)
	return nil
}
