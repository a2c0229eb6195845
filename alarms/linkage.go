package alarms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Linkage (联动) defaults: a command is sent again every CommandRetry until
// the device acknowledges it, at most CommandAttempts times. A command
// older than commandMaxAge is not sent again, whatever its attempts so far
// (docs/mqtt.md: cutting power long after the fact can do harm of its own),
// and carries its creation time and that expiry (ts, exp) so that the
// receiver refuses it too when it arrives late.
const (
	DefaultCommandRetry = 3 * time.Second
	CommandAttempts     = 3
	commandMaxAge       = time.Minute
)

// Command states.
const (
	CommandPending = "pending" // being sent, no answer yet
	CommandAcked   = "acked"   // the device performed it
	CommandRefused = "refused" // the device answered ok=false
	CommandFailed  = "failed"  // no answer after every attempt or within commandMaxAge, or no downlink
	CommandExpired = "expired" // too old to send (firewatch was down): never sent
)

// ActorDevice records a device's acknowledgement in an alarm's history.
const ActorDevice = "device"

// CommandStatus is one linkage command of an alarm, as the API shows it.
type CommandStatus struct {
	Cmd       string     `json:"cmd"`
	ID        string     `json:"id"`
	Channel   int        `json:"channel"`
	State     string     `json:"state"`
	Attempts  int        `json:"attempts"`
	CreatedAt time.Time  `json:"created_at"`
	DoneAt    *time.Time `json:"done_at,omitempty"`
	LastError string     `json:"last_error,omitempty"`
}

// command is the downlink payload (docs/mqtt.md).
type command struct {
	Cmd string `json:"cmd"`
	ID  string `json:"id"`
	Ch  int    `json:"ch,omitempty"`
	// TS is when the command was made and Exp the instant after which it
	// must not be performed, Unix milliseconds.
	TS  int64 `json:"ts"`
	Exp int64 `json:"exp"`
}

// commandState is the relay state a command leaves behind, as a gateway
// reads it back ("off": power cut).
var commandState = map[string]string{"cut_power": "off", "restore_power": "on"}

// linkageLoop sends pending commands until ctx is done.
func (m *Manager) linkageLoop(ctx context.Context) {
	t := time.NewTicker(max(m.cfg.CommandRetry/4, 20*time.Millisecond))
	defer t.Stop()
	for {
		if err := m.sendCommands(ctx, time.Now()); err != nil && ctx.Err() == nil {
			m.log.Error("linkage: sending commands failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.commandWake:
		}
	}
}

func (m *Manager) sendCommands(ctx context.Context, now time.Time) error {
	cs, err := m.store.read.pendingCommands(ctx)
	if err != nil {
		return fmt.Errorf("read commands: %w", err)
	}
	for _, c := range cs {
		due := !c.lastSent.Valid || c.lastSent.Int64+m.cfg.CommandRetry.Milliseconds() <= now.UnixMilli()
		exp := c.created + commandMaxAge.Milliseconds()
		switch {
		// The age is checked before every attempt, not only the first: a
		// command attempted before a crash must not go out again hours later.
		case now.UnixMilli() > exp && c.attempts == 0:
			if err := m.finishCommand(ctx, c, CommandPending, CommandExpired, "not sent: older than "+commandMaxAge.String(), now); err != nil {
				return err
			}
		case now.UnixMilli() > exp || due && c.attempts >= CommandAttempts:
			reason := "no acknowledgement after " + strconv.Itoa(c.attempts) + " attempt(s)"
			if c.attempts < CommandAttempts {
				reason += ", not sent again: older than " + commandMaxAge.String()
			}
			if c.lastError.String != "" {
				reason += " (" + c.lastError.String + ")"
			}
			if err := m.finishCommand(ctx, c, CommandPending, CommandFailed, reason, now); err != nil {
				return err
			}
		case !due:
		default:
			payload, _ := json.Marshal(command{Cmd: c.cmd, ID: c.key, Ch: c.ch, TS: c.created, Exp: exp})
			// The attempt is recorded before it is made: a device may answer
			// before Publish returns, and its ack reports the attempts.
			if ok, err := m.store.write.commandAttempt(ctx, c.id, c.attempts, now); err != nil {
				return fmt.Errorf("record command %s: %w", c.key, err)
			} else if !ok {
				continue // another instance on the shared store sent this attempt
			}
			var perr error
			if m.cfg.Publish == nil {
				perr = errors.New("no MQTT downlink configured")
			} else {
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				perr = m.cfg.Publish(pctx, "fw/v1/down/"+c.device+"/command", payload)
				cancel()
			}
			if perr == nil {
				m.log.Info("linkage: command sent", "alarm", formatID(c.alarmID), "device", c.device, "cmd", c.cmd,
					"channel", c.ch, "attempt", c.attempts+1)
				continue
			}
			m.log.Warn("linkage: command not published", "alarm", formatID(c.alarmID), "device", c.device, "cmd", c.cmd, "err", perr)
			if err := m.store.write.commandError(ctx, c.id, perr.Error()); err != nil {
				return fmt.Errorf("record command %s: %w", c.key, err)
			}
		}
	}
	return nil
}

// finishCommand records a command's outcome on the command and in its
// alarm's history, in one transaction, if the command is still in state
// from.
func (m *Manager) finishCommand(ctx context.Context, c pendingCommand, from, state, reason string, now time.Time) error {
	tx, err := m.store.begin(ctx)
	if err != nil {
		return err
	}
	defer tx.rollback()
	ok, err := tx.finishCommand(ctx, c.id, from, state, reason, now)
	if err != nil {
		return fmt.Errorf("record command %s: %w", c.key, err)
	}
	if !ok {
		return nil // answered meanwhile
	}
	// The note records the alarm's state as it stays: locked first, so
	// that on PostgreSQL no transition commits between the read and the
	// note (the history would end at a state the alarm left).
	if err := tx.lock(ctx, c.alarmID); err != nil {
		return fmt.Errorf("record command %s: %w", c.key, err)
	}
	st, err := tx.alarmState(ctx, c.alarmID)
	if err != nil {
		return fmt.Errorf("record command %s: %w", c.key, err)
	}
	note := "linkage " + c.cmd + channelNote(c.ch) + ": " + state + ", " + reason
	if err := tx.record(ctx, c.alarmID, st, st, now, ActorSystem, note); err != nil {
		return err
	}
	if err := tx.commit(); err != nil {
		return err
	}
	m.log.Warn("linkage: command "+state, "alarm", formatID(c.alarmID), "device", c.device, "cmd", c.cmd, "reason", reason)
	return nil
}

func channelNote(ch int) string {
	if ch == 0 {
		return " (whole device)"
	}
	return " ch " + strconv.Itoa(ch)
}

// ack is the payload of fw/v1/up/{device_id}/ack.
type ack struct {
	ID    string `json:"id"`
	OK    *bool  `json:"ok"`
	Error string `json:"error"`
	TS    int64  `json:"ts"`
	// State is the relay's state read back after the write ("off", "on"),
	// when the gateway could read it.
	State string `json:"state"`
	// Dup marks the repeated answer to a command id already performed.
	Dup bool `json:"dup"`
}

// ErrBadAck is returned (wrapped) for an acknowledgement that cannot be
// matched to a pending command.
var ErrBadAck = errors.New("bad command acknowledgement")

// CommandAck records a device's answer to a linkage command (from MQTT
// fw/v1/up/{device_id}/ack): the outcome goes on the command and in the
// alarm's history. A repeated answer changes nothing.
func (m *Manager) CommandAck(ctx context.Context, device string, payload []byte) error {
	var a ack
	if err := json.Unmarshal(payload, &a); err != nil || a.ID == "" || a.OK == nil {
		return fmt.Errorf(`%w: want {"id": "...", "ok": true|false}`, ErrBadAck)
	}
	c, state, found, err := m.store.read.commandByKey(ctx, a.ID)
	if err == nil && (!found || c.device != device) {
		return fmt.Errorf("%w: no command %q for device %s", ErrBadAck, a.ID, device)
	}
	if err != nil {
		return fmt.Errorf("read command %s: %w", a.ID, err)
	}
	late := ""
	switch state {
	case CommandPending:
	case CommandFailed:
		// Timed out here, but the device did answer (its first answer, or a
		// repeat of one that was lost): what it says replaces our guess.
		late = "late answer after the command had failed: "
	default:
		// Answered already (or never sent): the first outcome stands.
		m.log.Info("linkage: repeated acknowledgement ignored", "alarm", formatID(c.alarmID), "device", device,
			"cmd", c.cmd, "state", state, "dup", a.Dup)
		return nil
	}
	outcome, reason := CommandAcked, "acknowledged by the device after "+strconv.Itoa(c.attempts)+" attempt(s)"
	want, known := commandState[c.cmd]
	switch {
	case !*a.OK:
		outcome, reason = CommandRefused, "the device could not: "+storableText(a.Error, 300)
	case known && a.State != "" && a.State != want:
		// ok:true, yet the relay reads back the opposite: not done.
		outcome, reason = CommandRefused, "the device answered ok but reads back state "+
			storableText(a.State, 20)+", want "+want
	case a.State != "":
		reason += ", read back state " + storableText(a.State, 20)
	}
	if a.Dup {
		reason += " (repeated answer)"
	}
	return m.finishCommand(ctx, c, state, outcome, late+reason, time.Now())
}
