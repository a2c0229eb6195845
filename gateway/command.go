package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/firewatch-iot/firewatch/gateway/modbus"
)

// command is a linkage command from fw/v1/down/{device}/command
// (docs/gateway.md, "Downlink"; /work contract CONTRACT-COMMAND).
type command struct {
	dev *device
	Cmd string `json:"cmd"`
	ID  string `json:"id"`
	Ch  int    `json:"ch"`
	// TS is when the sender created the command and Exp the instant after
	// which it must not be executed (Unix ms). Both are required.
	TS  *int64 `json:"ts"`
	Exp *int64 `json:"exp"`
}

// ackMsg is the answer on fw/v1/up/{device}/ack.
type ackMsg struct {
	ID    string `json:"id"`
	OK    bool   `json:"ok"`
	TS    int64  `json:"ts"`
	Error string `json:"error,omitempty"`
	// State is the output read back after the write: "off" (power cut)
	// or "on" (power on).
	State string `json:"state,omitempty"`
	// Dup marks the repeat of the ack of an id executed before.
	Dup bool `json:"dup,omitempty"`
}

// Ack errors the contract names.
const (
	errExpired     = "expired"
	errMissingTime = "missing ts/exp"
	errClock       = "gateway clock not synchronised"
)

// onCommand queues a downlink command for the device's bus.
func (g *Gateway) onCommand(b *bus, d *device, payload []byte) {
	c := command{dev: d}
	if err := json.Unmarshal(payload, &c); err != nil || c.ID == "" {
		g.ack(d, ackMsg{ID: c.ID, Error: `malformed command: want {"cmd":…,"id":…,"ts":…,"exp":…}`})
		return
	}
	if c.TS == nil || c.Exp == nil {
		g.ack(d, ackMsg{ID: c.ID, Error: errMissingTime})
		return
	}
	select {
	case b.cmds <- c:
	default:
		g.ack(d, ackMsg{ID: c.ID, Error: "gateway busy: command queue full"})
	}
}

// execute writes a command to its device, reads the output back and acks
// the result upstream. It runs on the bus's goroutine, so commands of one
// bus are executed one at a time and the executed-id check cannot race.
func (g *Gateway) execute(ctx context.Context, b *bus, c command) {
	now := time.Now()
	// The repeat of an executed id is answered from the record, expired or
	// not: the sender learns the outcome without a second write.
	if prev, ok := g.commands.lookup(c.dev.cfg.ID, c.ID); ok {
		prev.Dup, prev.TS = true, now.UnixMilli()
		g.log.Info("command repeated; not executed again", "device", c.dev.cfg.ID, "id", c.ID)
		g.ack(c.dev, prev)
		return
	}
	if !clockSynced(now) {
		g.ack(c.dev, ackMsg{ID: c.ID, Error: errClock})
		return
	}
	if now.UnixMilli() > *c.Exp {
		g.log.Warn("command expired; not executed", "device", c.dev.cfg.ID, "id", c.ID, "cmd", c.Cmd,
			"age", now.Sub(time.UnixMilli(*c.TS)).Round(time.Millisecond))
		g.ack(c.dev, ackMsg{ID: c.ID, Error: errExpired})
		return
	}
	a := g.write(ctx, b, c)
	a.ID, a.TS = c.ID, time.Now().UnixMilli()
	if err := g.commands.record(c.dev.cfg.ID, a); err != nil {
		g.log.Error("record executed command", "id", c.ID, "err", err)
	}
	g.log.Info("command", "device", c.dev.cfg.ID, "cmd", c.Cmd, "id", c.ID, "ch", c.Ch, "ok", a.OK, "state", a.State, "err", a.Error)
	g.ack(c.dev, a)
}

// intended is the state of the supervised circuit a command asks for.
var intended = map[string]string{"cut_power": "off", "restore_power": "on"}

// write performs the command and reads its output back. The read-back
// decides: a write whose answer was lost (a stale frame, a timeout) but
// whose output changed is ok; a write that was "answered" (an echoing
// adapter, a relay that does not move) but whose output did not change
// is not.
func (g *Gateway) write(ctx context.Context, b *bus, c command) ackMsg {
	cmd, ok := c.dev.m.Commands[c.Cmd]
	if !ok {
		return ackMsg{Error: fmt.Sprintf("model %s has no command %q", c.dev.m.Model, c.Cmd)}
	}
	addr, err := cmd.Target(c.Ch)
	if err != nil {
		return ackMsg{Error: err.Error()}
	}
	slave := byte(c.dev.cfg.Slave)
	if cmd.Function == modbus.FuncWriteSingleCoil {
		err = b.master.WriteCoil(ctx, slave, addr, cmd.Value != 0)
	} else {
		err = b.master.WriteRegister(ctx, slave, addr, cmd.Value)
	}
	if cmd.NoReadback {
		if err != nil {
			return ackMsg{Error: err.Error()}
		}
		return ackMsg{OK: true}
	}
	var got uint16
	data, rerr := b.master.Do(ctx, modbus.Request{Slave: slave, Function: cmd.ReadbackFunction(), Address: addr, Value: 1})
	if rerr == nil {
		if cmd.Function == modbus.FuncWriteSingleCoil {
			if modbus.Bit(data, 0) {
				got = 1
			}
		} else {
			got = uint16(data[0])<<8 | uint16(data[1])
		}
	}
	want := cmd.Value
	if cmd.Function == modbus.FuncWriteSingleCoil && want != 0 {
		want = 1
	}
	switch {
	case rerr != nil && err != nil:
		return ackMsg{Error: err.Error() + "; readback: " + rerr.Error()}
	case rerr != nil:
		return ackMsg{Error: "readback: " + rerr.Error()}
	}
	state := intended[c.Cmd]
	if got != want {
		state = map[string]string{"off": "on", "on": "off"}[state]
		return ackMsg{Error: "readback: state " + state, State: state}
	}
	if err != nil {
		g.log.Warn("command write not confirmed, but the read-back shows it done", "device", c.dev.cfg.ID, "id", c.ID, "err", err)
	}
	return ackMsg{OK: true, State: state}
}

func (g *Gateway) ack(d *device, a ackMsg) {
	if a.TS == 0 {
		a.TS = time.Now().UnixMilli()
	}
	p, _ := json.Marshal(a)
	tok := g.mqtt.Publish("fw/v1/up/"+d.cfg.ID+"/ack", 1, false, p)
	go tok.WaitTimeout(g.cfg.MQTT.PublishTimeout)
}

// commandLog is the durable record of executed command ids and their
// acks, so that a command delivered again (a QoS 1 resend after a
// reconnect, a sender's retry) is answered, not executed a second time.
// It keeps the last maxCommands ids of the last commandTTL, in a file
// rewritten and synced after each command (commands are rare).
type commandLog struct {
	path    string
	mu      sync.Mutex
	entries []executedCommand
}

type executedCommand struct {
	Dev string `json:"dev"`
	ackMsg
}

const (
	maxCommands = 1000
	commandTTL  = 24 * time.Hour
)

func openCommandLog(path string) (*commandLog, error) {
	l := &commandLog{path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("command record: %w", err)
	}
	if err := json.Unmarshal(b, &l.entries); err != nil {
		return nil, fmt.Errorf("command record %s: %w", path, err)
	}
	return l, nil
}

func (l *commandLog) lookup(dev, id string) (ackMsg, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.entries) - 1; i >= 0; i-- {
		if e := l.entries[i]; e.ID == id && e.Dev == dev {
			return e.ackMsg, true
		}
	}
	return ackMsg{}, false
}

func (l *commandLog) record(dev string, a ackMsg) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, executedCommand{Dev: dev, ackMsg: a})
	cut := time.Now().Add(-commandTTL).UnixMilli()
	drop := max(0, len(l.entries)-maxCommands)
	for drop < len(l.entries) && l.entries[drop].TS < cut {
		drop++
	}
	l.entries = l.entries[drop:]
	return writeFileSync(l.path, l.entries)
}
