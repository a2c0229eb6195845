package ingest

import "github.com/firewatch-iot/firewatch/devices"

// SetLedger makes the decoder resolve device ids in l, a newer snapshot
// of the registry whose device indices extend the current one's
// (devices.Ledger.Apply keeps them stable): the devices l adds get their
// per-device state, and a device l removed is rejected as unknown from
// now on. Call it between two messages (the pipeline does, issue 18).
func (d *Decoder) SetLedger(l *devices.Ledger) {
	if n := len(l.Devices); n > len(d.lastRecv) {
		d.lastRecv = append(d.lastRecv, make([]int64, n-len(d.lastRecv))...)
	}
	d.ledger = l
}
