package cluster

import (
	"context"
	"slices"
	"strings"
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
//
// A release must never leave a partition to nobody (issue 15, takeover
// time): the instances counted as live are those whose announcement has
// not expired yet, and a dead instance's last announcement can outlive its
// pins by a moment (it expires up to instanceTTL after the death, a pin
// from pinned_ttl minus a pull's life on). So an instance releases nothing
// for 2·instanceTTL after it acquired a partition (an acquisition is what
// a death looks like from here), and it watches what it released
// (handedOver): pinned by another instance, it pulls it again at once as
// a standby (ready to take it back should that one die soon); taken by
// nobody within a pull request's life while messages wait, it pulls it
// again at once to handle it itself and releases nothing more to the same
// set of instances for a minute.

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
	resume := map[int]released{} // partitions released, not pulled again yet
	// After a release nobody took: no release to the same live set until.
	var holdLive string
	var holdUntil time.Time
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
		if len(resume) > 0 && s.handedOver(ctx, parts, resume) {
			slices.Sort(live)
			holdLive, holdUntil = strings.Join(live, " "), time.Now().Add(time.Minute)
		}
		for n, r := range resume {
			if r.now || time.Now().After(r.until) {
				if err := parts[n].consume(); err != nil {
					s.log.Warn("cluster mode: partition not resumed; retrying", "partition", n, "err", err)
					continue
				}
				delete(resume, n)
			}
		}
		if err == nil && len(resume) == 0 && len(live) > 0 && s.mayRelease(live, holdLive, holdUntil) {
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
				}
				for range excess {
					<-done
				}
				for _, n := range owned[:excess] {
					resume[n] = released{at: time.Now(), until: time.Now().Add(2*s.cfg.PinnedTTL + s.balanceEvery())}
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

// released is a partition this instance released, not pulled again yet.
type released struct {
	at    time.Time // released (unpinned) then
	until time.Time // pulled again then at the latest
	now   bool      // pulled again at once (handedOver)
}

// handOverWithin is how long a released partition may stay without an
// owner while messages wait before the releaser takes it back: an instance
// pulling it as a standby has a pull request waiting all the time but for
// a moment between two (each lives a second: consume), so it is pinned at
// the first message after the release.
const handOverWithin = time.Second

// mayRelease reports whether the balance may release partitions now: not
// within 2·instanceTTL of this instance's last acquisition (a dead
// instance may still be counted in live then: its announcement expires up
// to instanceTTL after its death, its pins from pinned_ttl minus a pull's
// life on), and not to the live set of a release nobody took (holdLive),
// until holdUntil.
func (s *Source) mayRelease(live []string, holdLive string, holdUntil time.Time) bool {
	if time.Since(time.Unix(0, s.lastAcquired.Load())) < 2*s.instanceTTL() {
		return false
	}
	if holdLive == "" || time.Now().After(holdUntil) {
		return true
	}
	l := slices.Clone(live)
	slices.Sort(l)
	return strings.Join(l, " ") != holdLive
}

// handedOver looks at the partitions in resume (released a moment ago) on
// the server and marks to be pulled again at once those another instance
// holds (pinned: this instance becomes a standby for them at once, instead
// of after the fixed delay, so that it takes them back within the pin's
// expiry should that instance die) and those no instance took within
// handOverWithin while messages wait for them (the instance they were
// released for is dead or not pulling: this one handles them again). It
// reports whether a release was not taken.
func (s *Source) handedOver(ctx context.Context, parts []*partition, resume map[int]released) (notTaken bool) {
	type state struct {
		n                   int
		ok, pinned, waiting bool
	}
	c, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	states := make(chan state, len(resume))
	for n := range resume {
		go func() {
			st := state{n: n}
			if info, err := parts[n].cons.Info(c); err == nil {
				st.ok, st.waiting = true, info.NumPending > 0 || info.NumAckPending > 0
				for _, g := range info.PriorityGroups {
					st.pinned = st.pinned || g.Group == group && g.PinnedClientID != ""
				}
			}
			states <- st
		}()
	}
	for range len(resume) {
		st := <-states
		r := resume[st.n]
		switch {
		case !st.ok || r.now:
		case st.pinned:
			r.now = true
		case st.waiting && time.Since(r.at) >= handOverWithin:
			s.log.Warn("cluster mode: a released partition was taken by no other instance; handling it again",
				"partition", st.n, "released", time.Since(r.at).Round(time.Millisecond))
			r.now, notTaken = true, true
		}
		resume[st.n] = r
	}
	return notTaken
}
