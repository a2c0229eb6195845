// Package nbiottest holds what the tests of the NB-IoT platform handlers
// share: a pipeline behind the Submit seam that records what it took and can
// be made to fail.
package nbiottest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/firewatch-iot/firewatch/ingest/nbiot"
)

// Sink records the reports submitted to it and the outcomes counted, and
// refuses submits while it is down. Platform, if set, is the only platform
// Count accepts (a handler counting under another is a bug).
type Sink struct {
	Platform nbiot.Platform

	mu     sync.Mutex
	down   bool
	got    []nbiot.Report
	counts map[string]int
}

// Submit is the nbiot.Intake Submit seam.
func (s *Sink) Submit(_ context.Context, rs []nbiot.Report) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errors.New("store down")
	}
	s.got = append(s.got, rs...)
	return nil
}

// Count is the nbiot.Intake Count seam.
func (s *Sink) Count(p nbiot.Platform, outcome string) {
	if s.Platform != nbiot.PlatformInvalid && p != s.Platform {
		panic(fmt.Sprintf("counted under %v, want %v", p, s.Platform))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.counts == nil {
		s.counts = map[string]int{}
	}
	s.counts[outcome]++
}

// SetDown makes Submit fail (true) or succeed again.
func (s *Sink) SetDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

// Snapshot returns copies of the reports submitted and the counts.
func (s *Sink) Snapshot() ([]nbiot.Report, map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := maps.Clone(s.counts)
	if c == nil {
		c = map[string]int{}
	}
	return slices.Clone(s.got), c
}

// ResetCounts forgets the counts.
func (s *Sink) ResetCounts() {
	s.mu.Lock()
	s.counts = nil
	s.mu.Unlock()
}

// Tally returns how many reports were submitted and a copy of the counts.
func (s *Sink) Tally() (int, map[string]int) {
	got, c := s.Snapshot()
	return len(got), c
}
