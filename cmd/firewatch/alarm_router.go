package main

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/alarms"
)

// stationTopic is the prefix of the duty reports of micro fire stations:
// fw/v1/up/station/{id}/status.
const stationTopic = "fw/v1/up/station/"

// topicRouter sits between the MQTT source and the hot-path pipeline.
//
// Station duty reports (fw/v1/up/station/{id}/status) and linkage command
// acknowledgements (fw/v1/up/{device_id}/ack) go to the alarm manager (the
// pipeline's decoder would reject them). Every other message goes to the
// pipeline, and then the router waits until the alarm events the message
// caused are stored (alarms.Manager.Sync), so that the message is
// acknowledged to the broker only once its alarms are durable: a firewatch
// killed at any moment either stored them or gets the message again. A
// message that raises nothing costs two atomic loads.
type topicRouter struct {
	pipeline func(topic string, payload []byte)
	alarms   *alarms.Manager
	log      *slog.Logger
	// lastBad rate-limits the log of malformed station reports.
	lastBad time.Time
}

func newTopicRouter(pipeline func(topic string, payload []byte), m *alarms.Manager, log *slog.Logger) *topicRouter {
	return &topicRouter{pipeline: pipeline, alarms: m, log: log}
}

func (r *topicRouter) handle(topic string, payload []byte) {
	if rest, ok := strings.CutPrefix(topic, stationTopic); ok {
		r.station(rest, payload)
		return
	}
	if dev, ok := ackDevice(topic); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := r.alarms.CommandAck(ctx, dev, payload)
		cancel()
		if err != nil && time.Since(r.lastBad) > 10*time.Second {
			r.lastBad = time.Now()
			r.log.Warn("command acknowledgement rejected (further ones logged at most every 10 s)", "device", dev, "err", err)
		}
		return
	}
	r.pipeline(topic, payload)
	r.alarms.Sync()
}

// station handles fw/v1/up/station/{id}/status. It runs on the MQTT
// delivery goroutine; reports are rare, and a store write is quick.
func (r *topicRouter) station(rest string, payload []byte) {
	id, kind, ok := strings.Cut(rest, "/")
	var err error
	if !ok || kind != "status" || id == "" {
		err = errUnknownStationTopic
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = r.alarms.SetStationStatus(ctx, id, payload, "mqtt")
		cancel()
	}
	if err != nil && time.Since(r.lastBad) > 10*time.Second {
		r.lastBad = time.Now()
		r.log.Warn("station report rejected (further ones logged at most every 10 s)", "topic", stationTopic+rest, "err", err)
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
