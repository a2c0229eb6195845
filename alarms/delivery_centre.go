package alarms

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// Forwarding to a 中心级 remote platform (GB/T 45839 5.4.1 and 5.5.3: alarm
// and fault information on to the remote platform in < 10 s; Appendix D's
// status_info). firewatch, as the on-site or manufacturer platform, tells
// the centre of each alarm and fault of an NB-IoT detector bound in the
// ledger (Device.NBIoT) and of its return to normal when the alarm
// closes. Each report is a push of the outbox like every other: queued in
// the alarm's own transaction, retried until the centre answers 2xx (a
// centre that is down loses nothing), shown with the alarm's pushes
// (target "centre"), behind the centre's own worker. The body is the
// CentreFormat's (ingest/nbiot/gb45839.Forwarder), so this package knows
// only the three states.

// RecipientCentre is the recipient of pushes to the centre, and their
// outbox target.
const (
	RecipientCentre = "centre"
	TargetCentre    = "centre"
)

// Status values of a centre report (GB/T 45839 Appendix D status_info).
const (
	CentreNormal = 1 // 正常监视: the alarm closed, none other open
	CentreAlarm  = 2 // 报警
	CentreFault  = 3 // 故障
)

// CentreFormat renders a centre report: device d is in status at time at.
// ok false means d cannot be named to the centre (no Appendix B id): the
// report is not sent.
type CentreFormat interface {
	StatusBody(d *devices.Device, status int, at time.Time) (body []byte, ok bool, err error)
}

// Centre is the remote platform of Config.Centre.
type Centre struct {
	URL    string // its status_info endpoint, path token included
	Format CentreFormat
}

// NewCentre checks the centre's URL.
func NewCentre(rawURL string, f CentreFormat) (*Centre, error) {
	if u, err := url.Parse(rawURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("centre: not an http(s) URL")
	}
	if f == nil {
		return nil, errors.New("centre: no format")
	}
	return &Centre{URL: rawURL, Format: f}, nil
}

// centreStatus is the centre status of an alarm's severity: fires and
// alarms are 报警, faults and offline (lost communication, 5.5.2) 故障;
// warnings are not forwarded (0).
func centreStatus(severity string) int {
	switch severity {
	case rules.SeverityFire.String(), rules.SeverityAlarm.String():
		return CentreAlarm
	case rules.SeverityFault.String(), rules.SeverityOffline.String():
		return CentreFault
	}
	return 0
}

// enqueueCentre queues, in tx, the centre report of a raised alarm of an
// NB-IoT detector. It returns the centre's endpoint when it queued one.
func (m *Manager) enqueueCentre(ctx context.Context, tx *storeTx, alarmID int64, a *Alarm, d *devices.Device, now time.Time) ([]string, error) {
	c := m.cfg.Centre
	if c == nil || d == nil || d.NBIoT == nil {
		return nil, nil
	}
	st := centreStatus(a.Severity)
	if st == 0 {
		return nil, nil
	}
	at := a.DeviceTime
	if at.IsZero() {
		at = now
	}
	return m.queueCentre(ctx, tx, alarmID, TransitionRaised, d, st, at, now)
}

// enqueueCentreClose queues, in tx, the centre report of a closed alarm
// that the centre was told of: normal, or the status of the device's other
// alarms the centre was told of and that are still open (a fault closing
// under an open fire leaves the centre at 报警).
func (m *Manager) enqueueCentreClose(ctx context.Context, tx *storeTx, alarmID int64, a *Alarm, now time.Time) ([]string, error) {
	c := m.cfg.Centre
	if c == nil {
		return nil, nil
	}
	told, err := tx.centreTold(ctx, alarmID)
	if err != nil || !told {
		return nil, err
	}
	d, ok := m.led().LookupID(a.Device)
	if !ok || d.NBIoT == nil {
		return nil, nil
	}
	sevs, err := tx.centreOpenSeverities(ctx, a.Device)
	if err != nil {
		return nil, fmt.Errorf("read open alarms of device %s: %w", a.Device, err)
	}
	st := CentreNormal
	for _, s := range sevs {
		if v := centreStatus(s); v == CentreAlarm || (v == CentreFault && st == CentreNormal) {
			st = v
		}
	}
	return m.queueCentre(ctx, tx, alarmID, string(a.State), d, st, now, now)
}

func (m *Manager) queueCentre(ctx context.Context, tx *storeTx, alarmID int64, transition string, d *devices.Device, status int,
	at, now time.Time) ([]string, error) {
	c := m.cfg.Centre
	body, ok, err := c.Format.StatusBody(d, status, at)
	if err != nil {
		return nil, fmt.Errorf("centre report of device %s: %w", d.ID, err)
	}
	if !ok {
		return nil, nil
	}
	key := formatID(alarmID) + "-" + transition + "-" + TargetCentre
	if err := tx.insertPush(ctx, newPush{alarmID: alarmID, transition: transition, target: TargetCentre,
		endpoint: c.URL, key: key, body: body}, now); err != nil {
		return nil, fmt.Errorf("queue centre report %s: %w", key, err)
	}
	return []string{c.URL}, nil
}
