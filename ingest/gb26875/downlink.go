package gb26875

import (
	"encoding/binary"
	"fmt"
)

// Downlink is the ADU of a centre → UITD frame (types 61–68, 81, 84–86, 88–91): a read (请求), an
// initialisation, a clock synchronisation or a 查岗. Which fields count depends on Type:
//
//	61, 65, 66, 68   Systems (61 up to 102, 66 up to 3, 65 and 68 exactly one)
//	62, 63, 67       Components (system and address; the component type is not sent)
//	64               Systems[0], Records, Start
//	84               Records, Start
//	81, 85, 86, 88, 89  nothing (one reserved byte 0)
//	90               Start (the centre's time)
//	91               Minutes (the time the operator has to answer)
type Downlink struct {
	Type       TypeFlag
	Systems    []System
	Components []Component
	Records    byte      // 64, 84: number of operation records to read (at most 102)
	Start      TimeLabel // 64, 84: records from this time; 90: the centre's time
	Minutes    byte      // 91: answer timeout in minutes
}

// Command is the command byte a downlink of type t travels with: 控制命令 (1) for 89, 90 and 91, 请求 (4)
// for the reads, whose 应答 (5) carries the matching upload type. The standard names only clock sync for
// command 1; initialisation and 查岗 are control actions too (see docs/gb26875.md: both are accepted back).
func (t TypeFlag) Command() Command {
	switch t {
	case TypeInitUITD, TypeSyncClock, TypeDutyCheck:
		return CmdControl
	}
	return CmdRequest
}

// Reply is the upload type that answers a read of type t (61 → 1, …, 88 → 28), 0 for the other types.
func (t TypeFlag) Reply() TypeFlag {
	if (t >= TypeReadSystemState && t <= TypeReadSystemTime) || (t >= TypeReadUITDState && t <= TypeReadUITDTime) {
		return t - 60
	}
	return 0
}

type limits struct{ size, min, max int }

var downlinkLimits = map[TypeFlag]limits{
	TypeReadSystemState:  {2, 1, 102},
	TypeReadComponent:    {6, 1, 22},
	TypeReadAnalog:       {6, 1, 63},
	TypeReadOperations:   {9, 1, 1},
	TypeReadVersion:      {2, 1, 1},
	TypeReadSystemConfig: {2, 1, 3},
	TypeReadCompConfig:   {6, 1, 26},
	TypeReadSystemTime:   {2, 1, 1},
	TypeReadUITDState:    {1, 1, 1},
	TypeReadUITDOps:      {7, 1, 1},
	TypeReadUITDVersion:  {1, 1, 1},
	TypeReadUITDConfig:   {1, 1, 1},
	TypeReadUITDTime:     {1, 1, 1},
	TypeInitUITD:         {1, 1, 1},
	TypeSyncClock:        {6, 1, 1},
	TypeDutyCheck:        {1, 1, 1},
}

// Append appends the ADU of d to dst.
func (d *Downlink) Append(dst []byte) ([]byte, error) {
	lim, ok := downlinkLimits[d.Type]
	if !ok {
		return dst, fmt.Errorf("%w: %d is not a downlink type", ErrType, d.Type)
	}
	n := 1
	switch d.Type {
	case TypeReadSystemState, TypeReadVersion, TypeReadSystemConfig, TypeReadSystemTime:
		n = len(d.Systems)
	case TypeReadComponent, TypeReadAnalog, TypeReadCompConfig:
		n = len(d.Components)
	case TypeReadOperations:
		if len(d.Systems) != 1 {
			return dst, fmt.Errorf("%w: type 64 reads one system, got %d", ErrADU, len(d.Systems))
		}
	}
	if n < lim.min || n > lim.max {
		return dst, fmt.Errorf("%w: type %d with %d objects, want %d…%d", ErrADU, d.Type, n, lim.min, lim.max)
	}
	if (d.Type == TypeReadOperations || d.Type == TypeReadUITDOps) && d.Records > 102 {
		return dst, fmt.Errorf("%w: %d records, at most 102", ErrADU, d.Records)
	}
	dst = append(dst, byte(d.Type), byte(n))
	switch d.Type {
	case TypeReadSystemState, TypeReadVersion, TypeReadSystemConfig, TypeReadSystemTime:
		for _, s := range d.Systems {
			dst = append(dst, s.Type, s.Addr)
		}
	case TypeReadComponent, TypeReadAnalog, TypeReadCompConfig:
		for _, c := range d.Components {
			dst = binary.LittleEndian.AppendUint32(append(dst, c.System.Type, c.System.Addr), c.Addr)
		}
	case TypeReadOperations:
		dst = append(append(dst, d.Systems[0].Type, d.Systems[0].Addr, d.Records), d.Start[:]...)
	case TypeReadUITDOps:
		dst = append(append(dst, d.Records), d.Start[:]...)
	case TypeSyncClock:
		dst = append(dst, d.Start[:]...)
	case TypeDutyCheck:
		dst = append(dst, d.Minutes)
	default: // 81, 85, 86, 88, 89
		dst = append(dst, 0)
	}
	return dst, nil
}

// Unmarshal decodes a downlink ADU into d, reusing its slices (what a UITD, or the simulator, does).
func (d *Downlink) Unmarshal(adu []byte) error {
	*d = Downlink{Systems: d.Systems[:0], Components: d.Components[:0]}
	if len(adu) < 2 {
		return fmt.Errorf("%w: %d bytes", ErrADU, len(adu))
	}
	d.Type = TypeFlag(adu[0])
	lim, ok := downlinkLimits[d.Type]
	if !ok {
		return fmt.Errorf("%w: %d is not a downlink type", ErrType, adu[0])
	}
	n := int(adu[1])
	if n < lim.min || n > lim.max || len(adu) != 2+n*lim.size {
		return fmt.Errorf("%w: type %d with count %d in %d bytes", ErrADU, adu[0], n, len(adu))
	}
	b := adu[2:]
	if r := readRecords(d.Type, b); r > 102 {
		// Table: "number of records n (≤ 102)"; Build refuses more, so
		// Decode does too (found by FuzzDecode's round trip).
		return fmt.Errorf("%w: %d records, at most 102", ErrADU, r)
	}
	switch d.Type {
	case TypeReadSystemState, TypeReadVersion, TypeReadSystemConfig, TypeReadSystemTime:
		for i := range n {
			d.Systems = append(d.Systems, System{b[2*i], b[2*i+1]})
		}
	case TypeReadComponent, TypeReadAnalog, TypeReadCompConfig:
		for i := range n {
			o := b[6*i:]
			d.Components = append(d.Components, Component{System: System{o[0], o[1]}, Addr: binary.LittleEndian.Uint32(o[2:])})
		}
	case TypeReadOperations:
		d.Systems = append(d.Systems, System{b[0], b[1]})
		d.Records = b[2]
		copy(d.Start[:], b[3:9])
	case TypeReadUITDOps:
		d.Records = b[0]
		copy(d.Start[:], b[1:7])
	case TypeSyncClock:
		copy(d.Start[:], b[:6])
	case TypeDutyCheck:
		d.Minutes = b[0]
	}
	return nil
}

// readRecords is the record count of a read-operations downlink (types 64
// and 84) whose objects are b, else 0.
func readRecords(t TypeFlag, b []byte) int {
	switch t {
	case TypeReadOperations:
		return int(b[2])
	case TypeReadUITDOps:
		return int(b[0])
	}
	return 0
}
