package cluster

import (
	"context"
	"slices"

	"github.com/firewatch-iot/firewatch/devices"
)

// devMap says which partition each device of a registry snapshot is in, and
// which devices each partition holds: Owns reads the first, a partition's
// acquisition (Adopter) the second. A registry change (devices.Live) makes
// a new one (Follow), so that a device added while the instance runs
// belongs to its partition at once: its owner watches its liveness (and
// raises its offline alarm), the others do not.
type devMap struct {
	partOf []int32           // device index → partition; -1: removed
	devsOf [][]devices.Index // partition → its devices
	ledger *devices.Ledger   // the snapshot (catchup.go: known)
}

// partitionOfDevice is the partition the servers' mapping gives the
// device's uplink: a gateway's devices are in the gateway's.
func partitionOfDevice(d *devices.Device, p int) int {
	id := d.ID
	if d.Gateway != "" {
		id = d.Gateway // the mapping partitions a gateway's topics by the gateway's id
	}
	return PartitionOf(id, p)
}

func newDevMap(l *devices.Ledger, p int) *devMap {
	m := &devMap{partOf: make([]int32, len(l.Devices)), devsOf: make([][]devices.Index, p), ledger: l}
	for i := range l.Devices {
		d := &l.Devices[i]
		if d.Removed {
			m.partOf[i] = -1
			continue
		}
		n := partitionOfDevice(d, p)
		m.partOf[i] = int32(n)
		m.devsOf[n] = append(m.devsOf[n], devices.Index(i))
	}
	return m
}

// partitionOf returns device d's partition, or false when it has none (an
// index beyond the registry known, a removed device).
func (m *devMap) partitionOf(d devices.Index) (int, bool) {
	if m == nil || int(d) >= len(m.partOf) || m.partOf[d] < 0 {
		return 0, false
	}
	return int(m.partOf[d]), true
}

// devicesOf returns partition n's devices.
func (m *devMap) devicesOf(n int) []devices.Index {
	if m == nil || n >= len(m.devsOf) {
		return nil
	}
	return m.devsOf[n]
}

// Follow makes the source follow the registry's changes (AdoptLedger).
// Subscribe it after the pipeline, whose liveness tracks an added device
// from the change on.
func (s *Source) Follow(lv *devices.Live) {
	lv.Subscribe(func(_, l *devices.Ledger, d *devices.Diff) { s.AdoptLedger(l, d) })
}

// AdoptLedger puts registry snapshot l, made by Diff d, in force for
// ownership: an added device is in its partition at once (owned here if
// this instance owns the partition, its liveness watched from the change),
// a removed one in none (Owns false: no offline alarm from any instance).
// An edited device whose partition changed (another gateway, or none) and
// whose new partition this instance owns is adopted first (Adopter: a
// fresh grace, its rule state forgotten), as a device of a partition
// acquired is, while Owns is still false for it.
func (s *Source) AdoptLedger(l *devices.Ledger, d *devices.Diff) {
	m := newDevMap(l, s.cfg.Partitions)
	old := s.devs.Load()
	if a, ok := s.taker.(Adopter); ok && old != nil {
		var moved []devices.Index
		for _, i := range d.Edited {
			was, ok1 := old.partitionOf(i)
			now, ok2 := m.partitionOf(i)
			if ok2 && (!ok1 || was != now) && s.ownsPartition(now) {
				moved = append(moved, i)
			}
		}
		if len(moved) > 0 {
			slices.Sort(moved)
			if err := a.Adopt(context.Background(), moved); err != nil {
				s.log.Warn("cluster mode: open offline alarms of devices moved to an owned partition not restored", "devices", len(moved), "err", err)
			}
		}
	}
	s.devs.Store(m)
}

// ownsPartition reports whether this instance holds partition n's pin.
func (s *Source) ownsPartition(n int) bool {
	parts := s.live.Load()
	return parts != nil && n < len(*parts) && (*parts)[n].owned()
}
