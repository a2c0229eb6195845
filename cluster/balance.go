package cluster

import (
	"context"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Balancing: every instance pulls every partition and the server pins one
// per partition, so the first instance to pull gets them all. Each instance
// announces itself in a KV bucket (a key per instance, expiring when it
// stops announcing, deleted when it stops in order); an instance owning more than its share, ceil(P/N) for
// N live instances, releases the excess (release: unpin) and pulls them
// again only after twice the pin's expiry, by when an instance waiting for
// them has them. Partitions thus spread when an instance joins and move
// back when one returns.

// The instances' keys expire after three quarters of the pin's expiry, so
// that a dead instance no longer counts when the survivors take its
// partitions (they would otherwise release them again, to nobody); an
// instance announces itself three times per expiry.
func (s *Source) instanceTTL() time.Duration { return s.cfg.PinnedTTL * 3 / 4 }

func (s *Source) balanceEvery() time.Duration { return s.instanceTTL() / 3 }

// instancesBucket is the KV bucket of live instances.
func (s *Source) instancesBucket() string { return "fw_instances_" + s.cfg.Stream }

// instances ensures the KV bucket of live instances.
func (s *Source) instances(ctx context.Context, js jetstream.JetStream) (kv jetstream.KeyValue, err error) {
	err = retry(ctx, s.log, "KV bucket "+s.instancesBucket(), func(c context.Context) (err error) {
		kv, err = js.CreateOrUpdateKeyValue(c, jetstream.KeyValueConfig{
			Bucket: s.instancesBucket(), Description: "live firewatch instances (cluster mode)",
			TTL: s.instanceTTL(), Replicas: s.cfg.Replicas, Storage: jetstream.FileStorage,
		})
		return err
	})
	return kv, err
}

func (s *Source) balance(ctx context.Context, kv jetstream.KeyValue, stream jetstream.Stream, name string, parts []*partition) {
	tick := time.NewTicker(s.balanceEvery())
	defer tick.Stop()
	resume := map[int]time.Time{} // partition released → when to pull it again
	for {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := kv.Put(c, name, []byte(time.Now().UTC().Format(time.RFC3339)))
		var live []string
		if err == nil {
			var keys jetstream.KeyLister
			if keys, err = kv.ListKeys(c); err == nil {
				live, err = drain(keys)
			}
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("cluster mode: instances not counted; partitions not balanced this round", "err", err)
		}
		s.log.Debug("cluster mode: balance", "live", live, "owned", len(s.Owned()))
		for n, at := range resume {
			if time.Now().After(at) {
				if err := parts[n].consume(); err != nil {
					s.log.Warn("cluster mode: partition not resumed; retrying", "partition", n, "err", err)
					continue
				}
				delete(resume, n)
			}
		}
		if err == nil && len(resume) == 0 && len(live) > 0 {
			share := (len(parts) + len(live) - 1) / len(live)
			var owned []int
			for _, p := range parts {
				if p.owned() {
					owned = append(owned, p.n)
				}
			}
			if excess := len(owned) - share; excess > 0 {
				// The highest-numbered ones, so that instances agree
				// roughly on which partitions move.
				slices.Reverse(owned)
				s.log.Info("cluster mode: releasing partitions to share them", "instances", len(live), "share", share,
					"owned", len(owned), "releasing", owned[:excess])
				done := make(chan struct{}, excess)
				for _, n := range owned[:excess] {
					go func() { parts[n].release(stream); done <- struct{}{} }()
					resume[n] = time.Now().Add(2*s.cfg.PinnedTTL + s.balanceEvery())
				}
				for range excess {
					<-done
				}
			}
		}
		select {
		case <-ctx.Done():
			for n := range resume { // stopping: the final release handles them
				parts[n].releasing.Store(true)
			}
			// No longer counted, before the partitions are handed over:
			// the others must not release them again at once.
			c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			kv.Delete(c, name)
			cancel()
			return
		case <-tick.C:
		}
	}
}

// drain reads the key lister's channel into a slice.
func drain(keys jetstream.KeyLister) ([]string, error) { //nolint:unparam // the error is there for a lister that reports one

	var out []string
	for k := range keys.Keys() {
		out = append(out, k)
	}
	keys.Stop() // done already: its subscription is gone ("invalid subscription")
	return out, nil
}
