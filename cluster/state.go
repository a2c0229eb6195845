package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/pipeline"
)

// State that moves with a partition (issue 15, docs/cluster.md): the owner
// of a partition writes the rule state and liveness of the partition's
// devices to the object store fw_state_{stream}, object p{n}, every
// cluster.state_interval and when it releases the partition, with the
// stream sequence S up to which it handled the partition's messages. An
// instance acquiring the partition restores that state and replays the
// partition's messages after S that the previous owner handled and
// acknowledged (they are not delivered again) through the rules only; then
// it takes the messages the consumer delivers, as before.

// Resumer is an Adopter (*pipeline.Pipeline) that can also checkpoint and
// restore a partition's devices.
type Resumer interface {
	SnapshotPartition(devs []devices.Index, st *pipeline.PartitionState) ([]byte, error)
	ResumePartition(ctx context.Context, devs []devices.Index, data []byte,
		replay func(yield func(pipeline.Replayed) error) error) (commit func(), restored int, err error)
	TakeHandled(m pipeline.Message, recv int64) error
}

// stateMagic heads a partition's checkpoint object: then S (8 bytes, little
// endian) and the pipeline's checkpoint (pipeline.SnapshotPartition).
const stateMagic = "FWPSTAT1"

// stateBucket is the object store of the partitions' checkpoints. An
// object store rather than a KV bucket: a value is one message, at most
// the servers' max_payload (1 MB by default), and a checkpoint is about
// 200–250 bytes a device, so a partition of more than some 4,000 devices
// would not fit; an object is cut into chunks.
func (s *Source) stateBucket() string { return "fw_state_" + s.cfg.Stream }

func stateKey(n int) string { return fmt.Sprintf("p%d", n) }

// ensureState creates the checkpoint store (replicated as the stream).
func (s *Source) ensureState(ctx context.Context, js jetstream.JetStream) error {
	if s.cfg.StateInterval <= 0 || s.devs.Load() == nil {
		return nil
	}
	if _, ok := s.taker.(Resumer); !ok {
		return nil
	}
	return retry(ctx, s.log, "object store "+s.stateBucket(), func(c context.Context) (err error) {
		s.state, err = js.CreateOrUpdateObjectStore(c, jetstream.ObjectStoreConfig{
			Bucket: s.stateBucket(), Description: "rule state and liveness of each partition's devices (cluster mode)",
			Replicas: s.cfg.Replicas, Storage: jetstream.FileStorage,
		})
		return err
	})
}

// checkpoint encodes the partition's state if it handled messages since
// the last checkpoint written, and hands it to the writer (writeStates),
// replacing one still waiting there. It runs on the partition's goroutine,
// between two messages, so that the state is exactly that of the messages
// up to lastSeq; the write, a few to some tens of ms, does not hold the
// partition up. done, if not nil, is closed once it is written (or found
// not needed, or failed).
func (p *partition) checkpoint(done chan struct{}) {
	r, ok := p.s.taker.(Resumer)
	if !ok || p.s.state == nil || p.lastSeq == 0 || p.lastSeq == p.saved.Load() {
		if done != nil {
			close(done)
		}
		return
	}
	blob, err := r.SnapshotPartition(p.s.devs.Load().devicesOf(p.n), &p.pstate)
	if err != nil {
		p.s.log.Warn("cluster mode: partition state not encoded", "partition", p.n, "err", err)
		if done != nil {
			close(done)
		}
		return
	}
	val := make([]byte, 0, len(stateMagic)+8+len(blob))
	val = append(val, stateMagic...)
	val = binary.LittleEndian.AppendUint64(val, p.lastSeq)
	val = append(val, blob...)
	w := stateWrite{seq: p.lastSeq, val: val, done: done}
	for {
		select {
		case p.writes <- w:
			return
		default:
		}
		select {
		case old := <-p.writes: // superseded by this newer one
			if old.done != nil {
				if w.done == nil {
					w.done = old.done
				} else {
					close(old.done)
				}
			}
		default:
		}
	}
}

// stateWrite is a checkpoint for the writer.
type stateWrite struct {
	seq  uint64
	val  []byte
	done chan struct{}
}

// writeStates writes the partition's checkpoints until the partition
// stops.
func (p *partition) writeStates() {
	for {
		var w stateWrite
		select {
		case <-p.quit:
			return
		case w = <-p.writes:
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := p.putState(ctx, w.seq, w.val)
		cancel()
		if err != nil {
			p.s.log.Warn("cluster mode: partition state not written; the next owner replays from an older one",
				"partition", p.n, "err", err)
		} else {
			p.saved.Store(w.seq)
			p.s.stateBytes.Set(float64(len(w.val)))
			p.s.stateSeconds.Observe(time.Since(start).Seconds())
		}
		if w.done != nil {
			close(w.done)
		}
	}
}

// putState writes val (state up to seq) unless the store holds a
// checkpoint of a later sequence (an instance that lost the partition and
// has not noticed yet must not overwrite its new owner's; two checkpoints
// written at once are each whole, so the check needs no lock).
func (p *partition) putState(ctx context.Context, seq uint64, val []byte) error {
	key := stateKey(p.n)
	info, err := p.s.state.GetInfo(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
	case err != nil:
		return err
	default:
		if old, err := strconv.ParseUint(info.Metadata[seqMeta], 10, 64); err == nil && old > seq {
			return nil
		}
	}
	_, err = p.s.state.Put(ctx, jetstream.ObjectMeta{Name: key, Metadata: map[string]string{seqMeta: strconv.FormatUint(seq, 10)}},
		bytes.NewReader(val))
	return err
}

// seqMeta is the metadata key of a checkpoint's S.
const seqMeta = "seq"

// parseState splits a checkpoint object into S and the pipeline's checkpoint.
func parseState(v []byte) (seq uint64, blob []byte, ok bool) {
	if len(v) < len(stateMagic)+8 || string(v[:len(stateMagic)]) != stateMagic {
		return 0, nil, false
	}
	return binary.LittleEndian.Uint64(v[len(stateMagic):]), v[len(stateMagic)+8:], true
}

// resume restores the partition's state from its checkpoint and replays
// the messages after it that the previous owner handled and nobody will
// deliver again: those up to the last one the consumer delivered
// (delivered), except held (delivered again to this instance, taken next).
// It returns the commit to call once the pin is this instance's, or nil
// when there is no usable checkpoint (the caller falls back to Adopt).
func (p *partition) resume(ctx context.Context, held []jetstream.Msg, delivered uint64) func() {
	r, ok := p.s.taker.(Resumer)
	if !ok || p.s.state == nil || p.s.devs.Load() == nil {
		return nil
	}
	start := time.Now()
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	v, err := p.s.state.GetBytes(c, stateKey(p.n))
	cancel()
	if err != nil {
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			p.s.log.Info("cluster mode: no state checkpoint of the partition; its devices' rule state and liveness start afresh",
				"partition", p.n)
		} else {
			p.s.log.Warn("cluster mode: state checkpoint of the partition not read; its devices' rule state and liveness start afresh",
				"partition", p.n, "err", err)
		}
		return nil
	}
	seq, blob, ok := parseState(v)
	if !ok {
		p.s.log.Warn("cluster mode: state checkpoint of the partition not understood; its devices' rule state and liveness start afresh",
			"partition", p.n)
		return nil
	}
	skip := make(map[uint64]bool, len(held))
	for _, m := range held {
		if md, err := m.Metadata(); err == nil {
			skip[md.Sequence.Stream] = true
		}
	}
	replayed, last := map[uint64]bool{}, seq
	kept := time.Now()
	commit, n, err := r.ResumePartition(ctx, p.s.devs.Load().devicesOf(p.n), blob, func(yield func(pipeline.Replayed) error) error {
		return p.replay(ctx, seq+1, delivered, skip, func(m pipeline.Replayed, q uint64) error {
			replayed[q] = true
			last = max(last, q)
			if time.Since(kept) > p.s.cfg.AckWait/3 {
				for _, h := range held {
					h.InProgress() // ours while the replay runs
				}
				kept = time.Now()
			}
			return yield(m)
		})
	})
	if err != nil {
		p.s.log.Warn("cluster mode: state checkpoint of the partition not restored; its devices' rule state and liveness start afresh",
			"partition", p.n, "err", err)
		return nil
	}
	p.lastSeq, p.handledUpTo, p.replayed = last, seq, replayed
	p.saved.Store(0)
	p.s.replayed.Add(float64(len(replayed)))
	p.s.restoreSeconds.Observe(time.Since(start).Seconds())
	p.s.log.Info("cluster mode: partition state restored", "partition", p.n, "devices", n, "checkpoint_seq", seq,
		"replayed", len(replayed), "delivered_seq", delivered, "took", time.Since(start).Round(time.Millisecond))
	return commit
}

// replayUnheard bounds the fetches of a replay that meet no responder
// (a consumer just created, not yet known where the request arrives), 50 ms
// more apart each time: 0.75 s in all at most, well within ack_wait (the
// messages held for the acquisition are kept in progress only as the
// replay yields).
const replayUnheard = 5

// replay reads the partition's messages from sequence from to to (stream
// sequences) in order, skipping those in skip, and gives each to f.
func (p *partition) replay(ctx context.Context, from, to uint64, skip map[uint64]bool,
	f func(pipeline.Replayed, uint64) error) error {
	if from > to || p.s.stream == nil {
		return nil
	}
	if info, err := p.s.stream.Info(ctx); err == nil && info.State.FirstSeq > from {
		p.s.log.Warn("cluster mode: the stream no longer holds the oldest messages after the partition's checkpoint (max_age, max_mb); their effect on the rule state is lost",
			"partition", p.n, "checkpoint_seq", from-1, "stream_first_seq", info.State.FirstSeq)
	}
	cons, err := p.s.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{partitionFilter(p.n)},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
	})
	if err != nil {
		return err
	}
	unheard := 0
	for {
		batch, err := cons.Fetch(pullBatch, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			q := md.Sequence.Stream
			if q > to {
				return nil
			}
			if !skip[q] {
				if topic, _, ok := TopicOf(m.Subject()); ok {
					if err := f(pipeline.Replayed{Topic: topic, Payload: m.Data(), Recv: md.Timestamp.UnixMilli()}, q); err != nil {
						return err
					}
				}
			}
			if q == to {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
			// Each Fetch of an ordered consumer creates a consumer; its pull
			// request may reach this connection's server before the new
			// consumer's interest does, and meet no responder (seen in make
			// cluster at about one acquisition in ten, which then fell back
			// to forgotten rule state). Fetch again, from where the last one
			// stopped, a few times.
			if got == 0 && errors.Is(err, nats.ErrNoResponders) && unheard < replayUnheard {
				unheard++
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Duration(unheard) * 50 * time.Millisecond):
				}
				continue
			}
			return err
		}
		if got == 0 {
			return nil // nothing more in the stream up to to (its oldest went by its limits)
		}
	}
}
