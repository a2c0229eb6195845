package devices

import (
	"encoding/hex"
	"net/netip"
	"time"
)

// DefaultPatrol is a UITD's 巡检 period when its ledger entry names none: GB 50440 asks the monitoring
// centre to hear from every UITD at least every 2 h. A UITD silent for its patrol period is offline.
const DefaultPatrol = 2 * time.Hour

// maxUITDPoints bounds the points one UITD entry may list (a large controller has a few thousand).
const maxUITDPoints = 1 << 16

// UITD is a 用户信息传输装置 (user information transmission device, GB/T 26875.3) in the ledger: the box
// in a networked building's fire control room that reports its fire alarm controller to the centre.
//
// Device is the UITD's own ledger device (kind facility): its own faults and silence (巡检), the states of
// the controller's systems, and every point of the controller that Points does not list go to it, so that
// a fire alarm from a point nobody entered in the ledger is never dropped (docs/decisions.md, issue 13).
type UITD struct {
	// Address is the UITD's 6-byte address in wire order (written as 12 hex digits).
	Address [6]byte
	Device  Index
	// Patrol is the 巡检 period: silent this long, the UITD is offline.
	Patrol time.Duration
	// Networks are the source networks it may connect from; empty: any.
	Networks []netip.Prefix
	// Points maps the controller's systems and components to ledger devices.
	Points map[FacilityPoint]Index
	Line   int
}

// FacilityPoint addresses a system of the building's fire facilities (建筑消防设施系统: type of GB/T
// 26875.3 Table 4 and address) or, with Component set, one of its components (部件) by its 4-byte address.
// The component type is not part of it: reads (type 62) address a component without it, and a detector
// replaced by one of another type keeps its place.
type FacilityPoint struct {
	SystemType, SystemAddr byte
	Component              bool
	Addr                   uint32
}

// DeviceOf returns the ledger device p reports to: the one listed (ok), else the UITD's own.
func (u *UITD) DeviceOf(p FacilityPoint) (Index, bool) {
	if i, ok := u.Points[p]; ok {
		return i, true
	}
	return u.Device, false
}

// Admits reports whether the UITD may connect from addr (Networks; any when empty).
func (u *UITD) Admits(addr netip.Addr) bool {
	if len(u.Networks) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, n := range u.Networks {
		if n.Contains(addr) {
			return true
		}
	}
	return false
}

// UITDs returns the ledger's UITDs in file order.
func (l *Ledger) UITDs() []*UITD {
	if l.uitds == nil {
		return nil
	}
	return l.uitds.list
}

// UITD returns the UITD with the given address.
func (l *Ledger) UITD(addr [6]byte) (*UITD, bool) {
	if l.uitds == nil {
		return nil, false
	}
	u, ok := l.uitds.byAddr[addr]
	return u, ok
}

type uitdTable struct {
	list    []*UITD
	byAddr  map[[6]byte]*UITD
	entries []UITDEntry // as entered, for Entries and Apply
}

// uitds derives the UITD table from the entries once the devices are known. It sets the heartbeat of each
// UITD's own device to its patrol period over DefaultMissed (unless the device names one), and the Point
// name of each listed device. Problems are reported through b.
func (b *builder) uitds(entries []UITDEntry) {
	l := b.l
	t := &uitdTable{byAddr: make(map[[6]byte]*UITD, len(entries)), entries: entries}
	owner := map[Index]string{} // device → the UITD that reports it
	for i := range entries {
		e := &entries[i]
		bad := func(field, format string, args ...any) {
			b.problem(Problem{Line: e.Line, Section: "uitds", Index: i, ID: e.Address, Field: field}, format, args...)
		}
		device := func(field, id string) (Index, bool) {
			d, ok := l.LookupID(id)
			switch {
			case !ok:
				bad(field, "uitd %s: unknown device %q", e.Address, id)
				return 0, false
			case d.Kind != KindFacility:
				bad(field, "uitd %s: device %q is of kind %s, want facility", e.Address, id, d.Kind)
				return 0, false
			case owner[d.Index] != "" && owner[d.Index] != e.Address:
				bad(field, "uitd %s: device %q is already reported by uitd %s", e.Address, id, owner[d.Index])
				return 0, false
			}
			owner[d.Index] = e.Address
			return d.Index, true
		}
		var addr [6]byte
		if h, err := hex.DecodeString(e.Address); err != nil || len(h) != 6 {
			bad("address", "uitd: address %q is not 12 hex digits (the 6 address bytes in wire order)", e.Address)
			continue
		} else {
			copy(addr[:], h)
		}
		if t.byAddr[addr] != nil {
			bad("address", "uitd %s: duplicate address", e.Address)
			continue
		}
		u := &UITD{Address: addr, Patrol: e.Patrol, Line: e.Line, Points: make(map[FacilityPoint]Index, len(e.Points))}
		if u.Patrol == 0 {
			u.Patrol = DefaultPatrol
		}
		if u.Patrol < 0 {
			bad("patrol", "uitd %s: patrol %v is negative", e.Address, e.Patrol)
		}
		var dev Index
		ok := false
		if e.Device == "" {
			bad("device", "uitd %s: device is missing: the UITD's own ledger device (kind facility)", e.Address)
		} else {
			dev, ok = device("device", e.Device)
		}
		u.Device = dev
		for _, s := range e.Networks {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				a, aerr := netip.ParseAddr(s)
				if aerr != nil {
					bad("networks", "uitd %s: network %q is not an address or a prefix such as 10.8.0.0/16", e.Address, s)
					continue
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			u.Networks = append(u.Networks, p.Masked())
		}
		if len(e.Points) > maxUITDPoints {
			bad("points", "uitd %s: %d points, at most %d", e.Address, len(e.Points), maxUITDPoints)
			continue
		}
		for _, p := range e.Points {
			if p.System == nil || p.SystemAddr == nil || *p.System < 0 || *p.System > 255 || *p.SystemAddr < 0 || *p.SystemAddr > 255 {
				bad("points", "uitd %s: point of device %q: system and system_addr (0…255) are required", e.Address, p.Device)
				continue
			}
			k := FacilityPoint{SystemType: byte(*p.System), SystemAddr: byte(*p.SystemAddr)}
			if p.Addr != nil {
				k.Component, k.Addr = true, *p.Addr
			}
			if _, dup := u.Points[k]; dup {
				bad("points", "uitd %s: point %d/%d/%#x listed twice", e.Address, k.SystemType, k.SystemAddr, k.Addr)
				continue
			}
			if p.Type != nil && (*p.Type < 0 || *p.Type > 255) {
				bad("points", "uitd %s: point of device %q: type %d is not 0…255", e.Address, p.Device, *p.Type)
				continue
			}
			if i, pok := device("points", p.Device); pok {
				u.Points[k] = i
				var where string // where the controller is: the UITD's own device's address
				if ok {
					where = l.Devices[dev].Address
				}
				l.Devices[i].Point = pointName(where, k, p.Type)
			}
		}
		if ok {
			if d := &l.Devices[dev]; (d.Heartbeat == 0 || d.flags&hbDerived != 0) && u.Patrol > 0 {
				d.Heartbeat, d.flags = u.Patrol/DefaultMissed, d.flags|hbDerived
			}
		}
		t.byAddr[addr] = u
		t.list = append(t.list, u)
	}
	l.uitds = t
}
