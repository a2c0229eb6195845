package uitd

import (
	"math"

	"github.com/firewatch-iot/firewatch/ingest/gb26875"
)

// These helpers send what a fire alarm controller reports through its UITD. Each waits for the 确认 (see
// Send) and returns the serial number used.

func (u *UITD) component(p Point, state gb26875.ComponentBits) (uint16, error) {
	c := gb26875.ComponentState{Component: p.Component, State: state, Time: u.label()}
	if err := gb26875.PutText(c.Desc[:], p.Desc); err != nil {
		return 0, err
	}
	return u.Send(&gb26875.Upload{Type: gb26875.TypeComponentState, ComponentStates: []gb26875.ComponentState{c}})
}

// Fire reports point p in fire alarm (火警).
func (u *UITD) Fire(p Point) (uint16, error) {
	return u.component(p, gb26875.CompNormal|gb26875.CompFire)
}

// Fault reports point p in fault (故障).
func (u *UITD) Fault(p Point) (uint16, error) {
	return u.component(p, gb26875.CompNormal|gb26875.CompFault)
}

// Supervisory reports point p in the supervisory state (监管).
func (u *UITD) Supervisory(p Point) (uint16, error) {
	return u.component(p, gb26875.CompNormal|gb26875.CompSupervisory)
}

// Shield reports point p disabled (屏蔽).
func (u *UITD) Shield(p Point) (uint16, error) {
	return u.component(p, gb26875.CompNormal|gb26875.CompDisabled)
}

// Normal reports point p back to normal.
func (u *UITD) Normal(p Point) (uint16, error) { return u.component(p, gb26875.CompNormal) }

// Reset reports a reset (复位) of system s: the operation (type 4, operator op) and then the system state
// with the reset bit.
func (u *UITD) Reset(s gb26875.System, op byte) (uint16, error) {
	if _, err := u.Send(&gb26875.Upload{Type: gb26875.TypeOperation, Operations: []gb26875.Operation{
		{System: s, Ops: gb26875.OpReset, Operator: op, Time: u.label()}}}); err != nil {
		return 0, err
	}
	return u.Send(&gb26875.Upload{Type: gb26875.TypeSystemState, SystemStates: []gb26875.SystemState{
		{System: s, State: gb26875.SysNormal | gb26875.SysReset, Time: u.label()}}})
}

// PowerFault reports the UITD's own main power fault (type 21).
func (u *UITD) PowerFault() (uint16, error) {
	return u.Send(&gb26875.Upload{Type: gb26875.TypeUITDState, UITDStates: []gb26875.UITDState{
		{State: gb26875.UITDNormal | gb26875.UITDMainPower, Time: u.label()}}})
}

// Temperature reports an analog temperature of point p in °C (type 3, 0.1 °C resolution).
func (u *UITD) Temperature(p Point, celsius float64) (uint16, error) {
	raw := int16(math.Round(celsius * 10))
	return u.Send(&gb26875.Upload{Type: gb26875.TypeAnalog, Analogs: []gb26875.Analog{
		{Component: p.Component, Kind: 3, Raw: raw, Time: u.label()}}})
}
