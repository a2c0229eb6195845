package server

import (
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest/gb26875"
)

// flags are the states of a facility device, one per event of the catalog's facility kind (flagNames).
type flags uint16

const (
	fFire flags = 1 << iota
	fFault
	fDisabled
	fSupervisory
	fStarted
	fFeedback
	fDelay
	fPower
	fMainPower
	fBackupPower
	fBus
	fLink
	fLine
	numFlags = iota
)

var flagNames = [numFlags]string{"fire_alarm", "fault", "disabled", "supervisory", "started", "feedback", "delay",
	"power_fault", "main_power_fault", "backup_power_fault", "bus_fault", "link_fault", "line_fault"}

// String names the flags set, e.g. "fire_alarm,fault"; "normal" for none.
func (f flags) String() string {
	var b []byte
	for i := range numFlags {
		if f&(1<<i) != 0 {
			if len(b) > 0 {
				b = append(b, ',')
			}
			b = append(b, flagNames[i]...)
		}
	}
	if len(b) == 0 {
		return "normal"
	}
	return string(b)
}

// The flags each kind of source reports, and those a 复位 (reset) of the controller clears: fire alarms,
// supervisory alarms and linkage states. Faults, power faults and 屏蔽 (disabled) are physical states that
// a reset does not end: the controller reports them again when they end (docs/decisions.md, issue 13).
const (
	componentFlags = fFire | fFault | fDisabled | fSupervisory | fStarted | fFeedback | fDelay | fPower
	systemFlags    = fFire | fFault | fDisabled | fSupervisory | fStarted | fFeedback | fDelay | fMainPower | fBackupPower | fBus
	uitdFlags      = fFire | fFault | fMainPower | fBackupPower | fLink | fLine
	resetFlags     = fFire | fSupervisory | fStarted | fFeedback | fDelay
)

// Bits 1–7 of the system and component states are 火警, 故障, 屏蔽, 监管, 启动, 反馈, 延时: fFire…fDelay.
func componentBits(s gb26875.ComponentBits) flags {
	f := flags(s>>1) & 0x7F
	if s&gb26875.CompPower != 0 {
		f |= fPower
	}
	return f
}

func systemBits(s gb26875.SystemBits) flags {
	f := flags(s>>1) & 0x7F
	if s&gb26875.SysMainPower != 0 {
		f |= fMainPower
	}
	if s&gb26875.SysBackupPower != 0 {
		f |= fBackupPower
	}
	if s&gb26875.SysBus != 0 {
		f |= fBus
	}
	return f
}

func uitdBits(s gb26875.UITDBits) flags {
	var f flags
	for _, b := range [...]struct {
		bit  gb26875.UITDBits
		flag flags
	}{{gb26875.UITDFire, fFire}, {gb26875.UITDFault, fFault}, {gb26875.UITDMainPower, fMainPower},
		{gb26875.UITDBackupPower, fBackupPower}, {gb26875.UITDLink, fLink}, {gb26875.UITDLine, fLine}} {
		if s&b.bit != 0 {
			f |= b.flag
		}
	}
	return f
}

// Kinds of source.
const (
	srcSystem = iota + 1
	srcComponent
	srcUITD
)

// srcKey is one reporter of states: a system, a component or the UITD itself.
type srcKey struct {
	kind uint8
	sys  gb26875.System
	addr uint32
}

type srcVal struct {
	dev  devices.Index
	bits flags
}

// maxSources bounds the reporters with a state remembered per UITD. Beyond it a new reporter's states
// stick to its device until the next reset: an alarm is never cleared early for want of memory.
const maxSources = 4096

// uitdState is what the centre knows of one UITD's controller: the states of the reporters that are not
// normal. Several reporters may share a device (the UITD's own device takes every point the ledger does not
// list), so a device's state is the union of its reporters': one point returning to normal does not clear
// the fire alarm another point still has. mu serialises the UITD's frames (a UITD reconnecting while its
// old connection still hangs has two).
type uitdState struct {
	mu         sync.Mutex
	u          *devices.UITD
	id         string // the UITD's own device id, for logs
	src        map[srcKey]srcVal
	sticky     map[devices.Index]flags
	lastFanout time.Time
	buf        []byte
	devs       []devices.Index
	refused    error // a message of the upload being committed was refused (checked.go)
}

func newUITDState(u *devices.UITD, l *devices.Ledger) *uitdState {
	return &uitdState{u: u, id: l.Device(u.Device).ID, src: map[srcKey]srcVal{}, sticky: map[devices.Index]flags{}}
}

// union is the state of device dev.
func (st *uitdState) union(dev devices.Index) flags {
	f := st.sticky[dev]
	for _, v := range st.src {
		if v.dev == dev {
			f |= v.bits
		}
	}
	return f
}

// set records the state of a reporter; it returns the device the reporter maps to and whether the ledger
// lists it.
func (st *uitdState) set(k srcKey, p devices.FacilityPoint, bits flags) (devices.Index, bool) {
	dev, listed := st.u.DeviceOf(p)
	if k.kind == srcUITD {
		dev, listed = st.u.Device, true
	}
	switch _, known := st.src[k]; {
	case bits == 0:
		delete(st.src, k)
	case !known && len(st.src) >= maxSources:
		st.sticky[dev] |= bits
	default:
		st.src[k] = srcVal{dev: dev, bits: bits}
	}
	return dev, listed
}

// reset applies a 复位 of one system (sys) or of the whole controller (nil): the reset flags of its
// reporters are cleared. It returns the devices whose state to send again: every device of the system
// listed in the ledger (their alarms may predate a restart of firewatch) and the UITD's own.
func (st *uitdState) reset(sys *gb26875.System) []devices.Index {
	st.devs = append(st.devs[:0], st.u.Device)
	for k, v := range st.src {
		if sys != nil && (k.kind == srcUITD || k.sys != *sys) {
			continue
		}
		if v.bits &^= resetFlags; v.bits == 0 {
			delete(st.src, k)
		} else {
			st.src[k] = v
		}
		st.devs = append(st.devs, v.dev)
	}
	if sys == nil {
		for d, f := range st.sticky {
			st.sticky[d] = f &^ resetFlags
		}
	}
	for p, d := range st.u.Points {
		if sys == nil || (p.SystemType == sys.Type && p.SystemAddr == sys.Addr) {
			st.devs = append(st.devs, d)
		}
	}
	slices.Sort(st.devs)
	st.devs = slices.Compact(st.devs)
	return st.devs
}

// appendState appends the v1 telemetry payload of the flags of mask: {"m":{"fire_alarm":1,"fault":0,…}}.
// It carries no ts: the states of one UITD are evaluated in the order they arrive, whatever its clock says
// (docs/decisions.md, issue 13).
func appendState(b []byte, f, mask flags) []byte {
	b = append(b, `{"m":{`...)
	first := true
	for i := range numFlags {
		bit := flags(1) << i
		if mask&bit == 0 {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, flagNames[i]...)
		b = append(b, `":`...)
		if f&bit != 0 {
			b = append(b, '1')
		} else {
			b = append(b, '0')
		}
	}
	return append(b, "}}"...)
}

// appendAnalog appends the v1 telemetry payload of one analog value, at its sample time when the label is
// a valid time (ms > 0).
func appendAnalog(b []byte, metric string, v float64, ms int64) []byte {
	b = append(b, '{')
	if ms > 0 {
		b = append(b, `"ts":`...)
		b = strconv.AppendInt(b, ms, 10)
		b = append(b, ',')
	}
	b = append(b, `"m":{"`...)
	b = append(b, metric...)
	b = append(b, `":`...)
	b = strconv.AppendFloat(b, v, 'f', -1, 64)
	return append(b, "}}"...)
}
