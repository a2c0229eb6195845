package devices

// TEMPORARY stub of i18a's contract (CONTRACT-18.md), reverted before
// merging i18a.

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

type Entries struct{}
type StationEntry struct {
	ID, Name string
	Grids    []string
	Endpoint string
	Lat, Lon float64
}
type GatewayEntry struct{ ID, SecretHash string }
type DeviceEntry struct {
	ID, Kind, Model, Grid, Address string
	Lat, Lon                       float64
	Unit, Phone, Station, Gateway  string
	Channels                       int
	Rules                          string
	Heartbeat                      time.Duration
	SecretHash                     string
	NBIoT                          NBIoT
	Line                           int
}
type Change struct {
	Places         map[string]string
	UpsertStations []StationEntry
	DeleteStations []string
	UpsertGateways []GatewayEntry
	DeleteGateways []string
	UpsertDevices  []DeviceEntry
	DeleteDevices  []string
}
type Diff struct {
	Added, Removed, Edited []Index
	Reset                  []Index
	Stations               []string
	Gateways               []string
}

func (l *Ledger) Apply(c *Change) (*Ledger, *Diff, error) { return nil, nil, errors.New("stub") }
func (l *Ledger) Len() int                                { return len(l.Devices) }
func (l *Ledger) Version() uint64                         { return 1 }

type Live struct {
	cur  atomic.Pointer[Ledger]
	mu   sync.Mutex
	subs []func(old, new *Ledger, d *Diff)
}

func NewLive(l *Ledger) *Live { lv := &Live{}; lv.cur.Store(l); return lv }
func (lv *Live) Load() *Ledger { return lv.cur.Load() }
func (lv *Live) Apply(c *Change) (*Ledger, *Diff, error) {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	old := lv.cur.Load()
	n, d, err := old.Apply(c)
	if err != nil {
		return nil, nil, err
	}
	lv.cur.Store(n)
	for _, f := range lv.subs {
		f(old, n, d)
	}
	return n, d, nil
}
func (lv *Live) Subscribe(f func(old, new *Ledger, d *Diff)) {
	lv.mu.Lock()
	lv.subs = append(lv.subs, f)
	lv.mu.Unlock()
}
