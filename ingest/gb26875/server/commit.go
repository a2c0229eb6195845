package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest/gb26875"
)

// heartbeat is the v1 payload of a bare sign of life (no readings: liveness only).
var heartbeat = []byte("{}")

// commit turns one upload of UITD st into v1 messages and hands them to the pipeline, in the order of the
// upload's objects. It returns nil once all are handled; the session then answers 确认.
func (s *Server) commit(st *uitdState, f *gb26875.Frame, up *gb26875.Upload) error {
	if s.stopping.Load() {
		return errStopping
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.refused = nil
	s.m.uploads(up.Type)
	switch up.Type {
	case gb26875.TypeSystemState:
		for i := range up.SystemStates {
			o := &up.SystemStates[i]
			if o.State&gb26875.SysReset != 0 {
				s.reset(st, &o.System)
			}
			p := devices.FacilityPoint{SystemType: o.Type, SystemAddr: o.Addr}
			s.state(st, srcKey{kind: srcSystem, sys: o.System}, p, systemFlags, systemBits(o.State), o.System, nil)
		}
	case gb26875.TypeComponentState:
		for i := range up.ComponentStates {
			o := &up.ComponentStates[i]
			p := devices.FacilityPoint{SystemType: o.System.Type, SystemAddr: o.System.Addr, Component: true, Addr: o.Addr}
			s.state(st, srcKey{kind: srcComponent, sys: o.System, addr: o.Addr}, p, componentFlags, componentBits(o.State), o.System, o)
		}
	case gb26875.TypeAnalog:
		for i := range up.Analogs {
			s.analog(st, &up.Analogs[i])
		}
	case gb26875.TypeOperation:
		for i := range up.Operations {
			o := &up.Operations[i]
			s.m.operations(uint8(o.Ops), false)
			s.log.Info("fire facility operation", "uitd", st.id, "system", string(o.System.AppendText(nil)),
				"ops", string(o.Ops.AppendText(nil)), "operator", o.Operator)
			if o.Ops&gb26875.OpReset != 0 {
				s.reset(st, &o.System)
			}
		}
	case gb26875.TypeUITDState:
		for i := range up.UITDStates {
			s.state(st, srcKey{kind: srcUITD}, devices.FacilityPoint{}, uitdFlags, uitdBits(up.UITDStates[i].State), gb26875.System{}, nil)
		}
	case gb26875.TypeUITDOperation:
		for i := range up.UITDOperations {
			o := &up.UITDOperations[i]
			s.m.operations(uint8(o.Ops), true)
			s.log.Info("UITD operation", "uitd", st.id, "ops", string(o.Ops.AppendText(nil)), "operator", o.Operator)
			if o.Ops&gb26875.UOpReset != 0 {
				s.reset(st, nil)
			}
			if o.Ops&gb26875.UOpDutyAnswer != 0 {
				s.dutyAnswer(st.u.Address, o.Operator, s.now()) // duty.go
			}
		}
	}
	// Any upload, a keep-alive too, is a sign of life of the UITD (巡检); now and then of its points.
	s.handle(st, s.status[st.u.Device], heartbeat)
	if now := s.now(); now.Sub(st.lastFanout) >= pointLiveness {
		st.lastFanout = now
		st.devs = st.devs[:0]
		for _, d := range st.u.Points {
			st.devs = append(st.devs, d)
		}
		for _, d := range st.devs {
			if d != st.u.Device {
				s.handle(st, s.status[d], heartbeat)
			}
		}
	}
	if err := st.refused; err != nil {
		// A message was refused (checked.go): not confirmed, the UITD sends the frame again, and the
		// points' signs of life go again with it.
		st.lastFanout = time.Time{}
		return err
	}
	if s.stopping.Load() {
		// Shutdown began while the pipeline had the frame: its alarms may have been given up (the alarm
		// manager's drain grace). Not confirmed, the frame comes again to the next run, where evaluating it
		// twice changes nothing.
		return errStopping
	}
	return nil
}

// state records a reporter's state and sends its device's state (the union of its reporters').
func (s *Server) state(st *uitdState, k srcKey, p devices.FacilityPoint, mask, bits flags, sys gb26875.System, comp *gb26875.ComponentState) {
	dev, listed := st.set(k, p, bits)
	if !listed {
		s.m.unlisted.Inc()
		lvl := slog.LevelDebug
		if bits&fFire != 0 {
			lvl = slog.LevelWarn // the push names the building only: the log names the point
		}
		if s.log.Enabled(context.Background(), lvl) {
			var desc []byte
			if comp != nil {
				desc = comp.Component.AppendText(nil)
				desc = append(desc, ' ')
				desc = gb26875.Text(desc, comp.Desc[:])
			} else {
				desc = sys.AppendText(nil)
			}
			s.log.Log(context.Background(), lvl, "UITD point not listed in the ledger: reported on the UITD's own device",
				"uitd", st.id, "point", string(desc), "state", bits.String())
		}
	}
	s.send(st, dev, mask)
}

// send hands device dev's current state of the flags of mask to the pipeline.
func (s *Server) send(st *uitdState, dev devices.Index, mask flags) {
	st.buf = appendState(st.buf[:0], st.union(dev), mask)
	s.handle(st, s.topics[dev], st.buf)
	s.m.messages.Inc()
}

// reset applies a 复位 of sys (nil: the whole controller) and sends the state of every device it touches.
func (s *Server) reset(st *uitdState, sys *gb26875.System) {
	s.m.resets.Inc()
	devs := st.reset(sys)
	for _, d := range devs {
		s.send(st, d, resetFlags)
	}
	s.log.Info("fire alarm controller reset (复位): its fire, supervisory and linkage states cleared", "uitd", st.id, "devices", len(devs))
}

func (s *Server) analog(st *uitdState, o *gb26875.Analog) {
	v, inRange, ok := o.Value()
	if !ok || !inRange {
		s.m.analogDropped.Inc()
		return
	}
	info, _ := o.Kind.Info()
	dev, _ := st.u.DeviceOf(devices.FacilityPoint{SystemType: o.System.Type, SystemAddr: o.System.Addr, Component: true, Addr: o.Addr})
	var ms int64
	if t, ok := o.Time.Time(cst); ok {
		ms = t.UnixMilli()
	}
	st.buf = appendAnalog(st.buf[:0], info.Metric, v, ms)
	s.handle(st, s.topics[dev], st.buf)
	s.m.messages.Inc()
}
