package bridge

import (
	"github.com/firewatch-iot/firewatch/devices"
)

// liveIndex is a registry snapshot and its NB-IoT index (issue 18: the
// registry changes live).
type liveIndex struct {
	ledger *devices.Ledger
	index  *devices.NBIoTIndex
}

// registry returns the registry snapshot in force and its index.
func (b *Bridge) registry() (*devices.Ledger, *devices.NBIoTIndex) {
	if li := b.live.Load(); li != nil {
		return li.ledger, li.index
	}
	return b.ledger, b.index
}

// Adopt makes the bridge find devices in l, a newer snapshot of the
// registry: a detector bound by the change is found from now on, one
// removed is unknown (its reports become pending entries). A snapshot
// whose bindings do not check (CheckLedger) is refused with the error,
// and the bridge keeps the one it has.
func (b *Bridge) Adopt(l *devices.Ledger) error {
	_, idx, err := CheckLedger(b.cfg, l)
	if err != nil {
		return err
	}
	b.live.Store(&liveIndex{ledger: l, index: idx})
	return nil
}
