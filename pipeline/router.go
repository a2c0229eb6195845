package pipeline

import (
	"context"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/rules"
)

// stationTopic is the prefix of the duty reports of micro fire stations:
// fw/v1/up/station/{id}/status.
const stationTopic = "fw/v1/up/station/"

// Alarms is what the pipeline needs of the alarm manager (alarms.Manager,
// through a small adapter in cmd/firewatch): the pipeline does not import
// the alarms package.
type Alarms interface {
	Events
	// Sync returns once every event submitted before it is stored, so that
	// the message that caused them may be acknowledged; or with an error
	// once it knows some may not be stored (the store failing at
	// shutdown): the message must then not be acknowledged. It must not
	// allocate when it returns nil.
	Sync() error
	// CommandAck takes a device's acknowledgement of a linkage command
	// (fw/v1/up/{device_id}/ack).
	CommandAck(ctx context.Context, device string, payload []byte) error
	// StationStatus takes a micro fire station's duty report
	// (fw/v1/up/station/{id}/status); by names the channel ("mqtt").
	StationStatus(ctx context.Context, station string, payload []byte, by string) error
	// OpenAlarms calls fn for every open alarm of severity sev, newest
	// first, so that a restart restores what the last run left open.
	OpenAlarms(ctx context.Context, sev rules.Severity, fn func(OpenAlarm)) error
}

// OpenAlarm is the part of a stored open alarm the pipeline restores.
type OpenAlarm struct {
	Rule, Device, Metric string
	Channel              int
	Since                time.Time
}

// Handle processes one uplink message and returns when it may be
// acknowledged to its sender: its readings are in the InfluxDB writer's
// batch and the alarm events it caused are stored (Alarms.Sync), so that a
// firewatch killed at any moment either stored them or gets the message
// again. It is safe to call from several goroutines (messages are handled
// one at a time); it must not keep payload. With Options.Durability the
// readings are durable only later: sources acknowledge through Take.
//
// Station duty reports (fw/v1/up/station/{id}/status) and linkage command
// acknowledgements (fw/v1/up/{device_id}/ack) go to the alarm manager (the
// decoder would reject them). Every other message goes to the hot path. A
// message that raises nothing costs two atomic loads more.
//
// It returns ErrNotStored when Alarms.Sync reports that the alarm events
// may not be stored: the message must not be acknowledged (Take).
func (p *Pipeline) Handle(topic string, payload []byte) error { return p.handleAt(topic, payload, 0) }

// handleAt is Handle for a message received at recv (Message.Recv; zero:
// now).
func (p *Pipeline) handleAt(topic string, payload []byte, recv int64) error {
	if rest, ok := strings.CutPrefix(topic, stationTopic); ok {
		p.station(rest, payload)
		return nil
	}
	if dev, ok := ackDevice(topic); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := p.alarms.CommandAck(ctx, dev, payload)
		cancel()
		if err != nil && p.logBad() {
			p.log.Warn("command acknowledgement rejected (further ones logged at most every 10 s)", "device", dev, "err", err)
		}
		return nil
	}
	p.handleFrom(topic, payload, false, recv)
	return p.sync()
}

// handleRelayed is Handle for a message an intermediary pushed on a
// device's behalf (Message.Relayed): telemetry, events and status only.
func (p *Pipeline) handleRelayed(topic string, payload []byte, recv int64) error {
	if strings.HasPrefix(topic, stationTopic) {
		return p.handleAt(topic, payload, recv)
	}
	p.handleFrom(topic, payload, true, recv)
	return p.sync()
}

// logBad rate-limits the logs of malformed station reports and
// acknowledgements: at most one every 10 s.
func (p *Pipeline) logBad() bool {
	now := time.Now().UnixNano()
	last := p.lastBad.Load()
	return now-last > int64(10*time.Second) && p.lastBad.CompareAndSwap(last, now)
}

// station handles fw/v1/up/station/{id}/status. Reports are rare, and a
// store write is quick.
func (p *Pipeline) station(rest string, payload []byte) {
	id, kind, ok := strings.Cut(rest, "/")
	var err error
	if !ok || kind != "status" || id == "" {
		err = errUnknownStationTopic
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = p.alarms.StationStatus(ctx, id, payload, "mqtt")
		cancel()
	}
	if err != nil && p.logBad() {
		p.log.Warn("station report rejected (further ones logged at most every 10 s)", "topic", stationTopic+rest, "err", err)
	}
}

// ackDevice returns the device of fw/v1/up/{device_id}/ack.
func ackDevice(topic string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, "fw/v1/up/")
	if !ok {
		return "", false
	}
	dev, ok := strings.CutSuffix(rest, "/ack")
	if !ok || dev == "" || strings.Contains(dev, "/") {
		return "", false
	}
	return dev, true
}

type routerError string

func (e routerError) Error() string { return string(e) }

const errUnknownStationTopic = routerError("want fw/v1/up/station/{id}/status")
