package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest/nbiot"
)

// Pending is a device that reports through a platform but is not bound in
// the ledger, or an installation a GB/T 45839 peer proposed (Install_info).
// It is never trusted by itself: an administrator reads it through the API
// (GET /api/v1/nbiot/pending) and binds the device in the ledger
// (devices[].nbiot), after which its reports raise alarms.
type Pending struct {
	Platform   string    `json:"platform"`
	IMEI       string    `json:"imei,omitempty"`
	PlatformID string    `json:"platform_id,omitempty"`
	Serial     string    `json:"serial,omitempty"`
	Tenant     string    `json:"tenant,omitempty"`
	Product    string    `json:"product,omitempty"`
	FirstSeen  time.Time `json:"first_seen"`
	LastSeen   time.Time `json:"last_seen"`
	Reports    int       `json:"reports"`
	// Install is the proposed installation of a GB/T 45839 Install_info.
	Install *nbiot.Install `json:"install,omitempty"`
}

func (p *Pending) key() string {
	return p.Platform + "\x00" + p.IMEI + "\x00" + p.PlatformID + "\x00" + p.Serial
}

var errPendingFull = errors.New("pending entries at their bound")

// pendingSet holds the pending entries, bounded, optionally kept in a file.
type pendingSet struct {
	mu   sync.Mutex
	max  int
	file string
	m    map[string]*Pending
}

// newPendingSet loads file (if set and present), dropping the entries of
// devices the ledger now binds.
func newPendingSet(max int, file string, idx *devices.NBIoTIndex) (*pendingSet, error) {
	s := &pendingSet{max: max, file: file, m: map[string]*Pending{}}
	if file == "" {
		return s, nil
	}
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("nbiot.pending_file: %w", err)
	}
	var list []Pending
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("nbiot.pending_file %s: %w", file, err)
	}
	for i := range list {
		p := &list[i]
		if _, bound := idx.Find(p.IMEI, p.PlatformID, p.Serial); bound || len(s.m) >= max {
			continue
		}
		s.m[p.key()] = p
	}
	return s, nil
}

// add records a report of an unbound device or an Install_info.
func (s *pendingSet) add(r *nbiot.Report, now time.Time) error {
	p := Pending{Platform: r.Platform.String(), IMEI: r.Device.IMEI, PlatformID: r.Device.PlatformID,
		Serial: r.Device.Serial, Tenant: r.Tenant, Product: r.Product, FirstSeen: now, LastSeen: now, Reports: 1}
	if r.Install != nil {
		in := *r.Install
		p.Install = &in
		p.Serial = in.Serial
	}
	k := p.key()
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[k]; ok {
		old.LastSeen = now
		old.Reports++
		if p.Install == nil {
			return nil // only seen again: not worth a write
		}
		old.Install = p.Install
	} else {
		if len(s.m) >= s.max {
			return errPendingFull
		}
		s.m[k] = &p
	}
	return s.saveLocked()
}

func (s *pendingSet) saveLocked() error {
	if s.file == "" {
		return nil
	}
	b, err := json.MarshalIndent(s.listLocked(), "", "  ")
	if err != nil {
		return err
	}
	tmp := s.file + ".tmp"
	if err := os.MkdirAll(filepath.Dir(s.file), 0o750); err != nil {
		return err
	}
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.file)
}

func (s *pendingSet) listLocked() []Pending {
	out := make([]Pending, 0, len(s.m))
	for _, p := range s.m {
		c := *p
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Pending) int {
		if c := a.FirstSeen.Compare(b.FirstSeen); c != 0 {
			return c
		}
		return cmpString(a.key(), b.key())
	})
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *pendingSet) list() []Pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listLocked()
}

func (s *pendingSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
