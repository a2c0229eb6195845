package main

import (
	"context"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/pipeline"
	"github.com/firewatch-iot/firewatch/rules"
)

// alarmPort is the alarm manager as the pipeline sees it
// (pipeline.Alarms): the pipeline does not import alarms.
type alarmPort struct{ *alarms.Manager }

var _ pipeline.Alarms = alarmPort{}

// StationStatus stores a station's duty report.
func (a alarmPort) StationStatus(ctx context.Context, id string, payload []byte, by string) error {
	_, err := a.SetStationStatus(ctx, id, payload, by)
	return err
}

// OpenAlarms pages through the open alarms of severity sev, newest first.
func (a alarmPort) OpenAlarms(ctx context.Context, sev rules.Severity, fn func(pipeline.OpenAlarm)) error {
	f := alarms.Filter{State: alarms.FilterOpen, Severity: sev, Limit: alarms.MaxLimit}
	for range 10000 { // pages of MaxLimit
		page, err := a.List(ctx, f)
		if err != nil {
			return err
		}
		for _, al := range page {
			fn(pipeline.OpenAlarm{Rule: al.Rule, Device: al.Device, Metric: al.Metric, Channel: al.Channel, Since: al.Since})
		}
		if len(page) < alarms.MaxLimit {
			break
		}
		f.Until = page[len(page)-1].RaisedAt
	}
	return nil
}
