package alarms

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// Digest schedules (预警提示): the policy documents ask for a monthly
// warning, weekly in special periods (特殊时期), and immediate ones for
// serious matters, which are the alarm pushes themselves.
const (
	DigestOff     = "off"
	DigestDaily   = "daily"
	DigestWeekly  = "weekly"
	DigestMonthly = "monthly"
)

// Digest defaults.
const (
	// DefaultDigestAt is when a digest goes out after its period ends:
	// 08:00 China Standard Time, the start of the duty day.
	DefaultDigestAt = 8 * time.Hour
	// DefaultDigestCheck is how often due digests are looked for; a failed
	// send is retried at the next check.
	DefaultDigestCheck = time.Minute
	// digestList bounds the open alarms, offline devices and devices with
	// false alarms a digest names; the counts cover all of them.
	digestList = 10
)

// ValidDigest reports whether s is a digest schedule.
func ValidDigest(s string) bool {
	return s == DigestOff || s == DigestDaily || s == DigestWeekly || s == DigestMonthly
}

// Digest is the summary (预警提示) of one grid over one period: sent on a
// schedule to the duty groups of towns and counties, and served by
// GET /api/v1/digest.
type Digest struct {
	Grid  string    `json:"grid"`
	Place string    `json:"place"`
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	// Alarms counts the alarms raised in the period, BySeverity by
	// severity, FalseAlarms those closed as false alarms (误报).
	Alarms      int            `json:"alarms"`
	BySeverity  map[string]int `json:"by_severity"`
	FalseAlarms int            `json:"false_alarms"`
	// Open are the alarms open now (at most 10, newest first; OpenCount
	// counts all), Hazards the open warnings and faults (隐患).
	Open      []DigestAlarm `json:"open"`
	OpenCount int           `json:"open_count"`
	Hazards   int           `json:"hazards"`
	// Offline are the devices offline now (open offline alarms).
	Offline      []DigestDevice `json:"offline"`
	OfflineCount int            `json:"offline_count"`
	// FalseRatio lists the devices with false alarms in the period, the
	// highest share first.
	FalseRatio []DigestDevice `json:"false_ratio"`
	// Response is the response-time accounting (考核) of the period's
	// alarms against the targets.
	Response StationStats `json:"response"`
	// Inspections are the 查岗 考核 figures of the grid's networked units (GB/T 26875.3), the lowest answer
	// rate first (at most 10; InspectionUnits counts all, InspectionsAsked/Answered sum them); none
	// without UITDs (digest_inspections.go).
	Inspections         []InspectionFigure `json:"inspections,omitempty"`
	InspectionUnits     int                `json:"inspection_units,omitempty"`
	InspectionsAsked    int                `json:"inspections_asked,omitempty"`
	InspectionsAnswered int                `json:"inspections_answered,omitempty"`
}

// DigestAlarm is an open alarm as a digest lists it.
type DigestAlarm struct {
	ID       string    `json:"id"`
	Severity string    `json:"severity"`
	State    State     `json:"state"`
	Device   string    `json:"device"`
	Address  string    `json:"address"`
	RaisedAt time.Time `json:"raised_at"`
}

// DigestDevice is a device as a digest lists it; Alarms and False are set
// in FalseRatio.
type DigestDevice struct {
	Device  string  `json:"device"`
	Address string  `json:"address"`
	Alarms  int     `json:"alarms,omitempty"`
	False   int     `json:"false_alarms,omitempty"`
	Ratio   float64 `json:"ratio,omitempty"`
}

// Digest computes the digest of grid (an administrative code prefix) over
// [from, to); the open alarms and offline devices are those of now.
func (m *Manager) Digest(ctx context.Context, grid string, from, to time.Time) (Digest, error) {
	// Empty lists are [] in the API's JSON, not null (issue 18).
	d := Digest{Grid: grid, Place: m.placeName(grid), From: from.In(cst), To: to.In(cst), BySeverity: map[string]int{},
		Open: []DigestAlarm{}, Offline: []DigestDevice{}, FalseRatio: []DigestDevice{}}
	period, err := m.store.list(ctx, Filter{Grid: grid, Since: from, Until: to, all: true})
	if err != nil {
		return d, err
	}
	type count struct{ n, false int }
	per := map[string]*count{}
	for _, a := range period {
		d.Alarms++
		d.BySeverity[a.Severity]++
		c := per[a.Device]
		if c == nil {
			c = &count{}
			per[a.Device] = c
		}
		c.n++
		if a.State == StateFalseAlarm {
			d.FalseAlarms++
			c.false++
		}
	}
	for dev, c := range per {
		if c.false > 0 {
			d.FalseRatio = append(d.FalseRatio, DigestDevice{Device: dev, Address: m.address(dev),
				Alarms: c.n, False: c.false, Ratio: float64(c.false) / float64(c.n)})
		}
	}
	sort.Slice(d.FalseRatio, func(i, j int) bool {
		a, b := d.FalseRatio[i], d.FalseRatio[j]
		if a.Ratio != b.Ratio {
			return a.Ratio > b.Ratio
		}
		if a.False != b.False {
			return a.False > b.False
		}
		return a.Device < b.Device
	})
	if len(d.FalseRatio) > digestList {
		d.FalseRatio = d.FalseRatio[:digestList]
	}
	open, err := m.store.list(ctx, Filter{Grid: grid, State: FilterOpen, all: true})
	if err != nil {
		return d, err
	}
	for _, a := range open {
		switch a.Severity {
		case rules.SeverityOffline.String():
			d.OfflineCount++
			if len(d.Offline) < digestList {
				d.Offline = append(d.Offline, DigestDevice{Device: a.Device, Address: m.address(a.Device)})
			}
			continue // a device offline is listed as such, not as an open alarm
		case rules.SeverityWarning.String(), rules.SeverityFault.String():
			d.Hazards++
		}
		d.OpenCount++
		if len(d.Open) < digestList {
			d.Open = append(d.Open, DigestAlarm{ID: a.ID, Severity: a.Severity, State: a.State, Device: a.Device,
				Address: m.address(a.Device), RaisedAt: a.RaisedAt})
		}
	}
	stats, err := m.Stats(ctx, Filter{Grid: grid, Since: from, Until: to})
	if err != nil {
		return d, err
	}
	for _, s := range stats {
		if s.Station == "" {
			d.Response = s
		}
	}
	m.inspections(&d, grid, from, to)
	return d, nil
}

func (m *Manager) placeName(grid string) string {
	if n, ok := m.led().Places[grid]; ok {
		return n
	}
	if g, err := devices.ParseGrid(grid); err == nil {
		return m.led().PlaceName(g)
	}
	return grid
}

func (m *Manager) address(device string) string {
	if d, ok := m.led().LookupID(device); ok {
		return d.Address
	}
	return ""
}

// Text is the digest as a duty group reads it (zh-CN markdown).
func (d *Digest) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "统计周期：%s 至 %s（北京时间）\n\n", d.From.In(cst).Format("2006-01-02 15:04"), d.To.In(cst).Format("2006-01-02 15:04"))
	fmt.Fprintf(&b, "**告警**：共 %d 起", d.Alarms)
	var parts []string
	for s := rules.SeverityFire; s >= rules.SeverityOffline; s-- { // the gravest first
		if n := d.BySeverity[s.String()]; n > 0 {
			parts = append(parts, s.ZH()+" "+strconv.Itoa(n))
		}
	}
	if len(parts) > 0 {
		b.WriteString("（" + strings.Join(parts, "、") + "）")
	}
	fmt.Fprintf(&b, "，其中误报 %d 起\n\n", d.FalseAlarms)
	fmt.Fprintf(&b, "**当前未处置告警**：%d 起，其中隐患（预警、故障）%d 起\n", d.OpenCount, d.Hazards)
	for _, a := range d.Open {
		fmt.Fprintf(&b, "- %s %s %s %s（%s），%s 起\n", a.ID, severityZH(a.Severity), stateZH[a.State], a.Device, a.Address,
			a.RaisedAt.In(cst).Format("01-02 15:04"))
	}
	if more := d.OpenCount - len(d.Open); more > 0 {
		fmt.Fprintf(&b, "- 另有 %d 起，见平台\n", more)
	}
	fmt.Fprintf(&b, "\n**离线设备**：%d 台\n", d.OfflineCount)
	for _, dv := range d.Offline {
		fmt.Fprintf(&b, "- %s（%s）\n", dv.Device, dv.Address)
	}
	if more := d.OfflineCount - len(d.Offline); more > 0 {
		fmt.Fprintf(&b, "- 另有 %d 台，见平台\n", more)
	}
	b.WriteString("\n**误报率**：")
	if len(d.FalseRatio) == 0 {
		b.WriteString("本期无误报\n")
	} else {
		b.WriteString("\n")
		for _, dv := range d.FalseRatio {
			fmt.Fprintf(&b, "- %s（%s）误报 %d/%d 起，%.0f%%\n", dv.Device, dv.Address, dv.False, dv.Alarms, 100*dv.Ratio)
		}
	}
	r := d.Response
	fmt.Fprintf(&b, "\n**响应时间**（目标：%s内确认，%s内到场）：\n", zhDuration(RespondTarget), zhDuration(ArriveTarget))
	line := func(what string, q Quantiles, share float64) {
		if q.N == 0 {
			fmt.Fprintf(&b, "- %s：本期无记录\n", what)
			return
		}
		fmt.Fprintf(&b, "- %s：%d 起，中位 %s，90%% 在 %s 内，达标率 %.0f%%\n", what, q.N,
			zhSeconds(*q.Median), zhSeconds(*q.P90), 100*share)
	}
	line("确认", r.Acknowledge, r.RespondedInTime)
	line("到场", r.Arrive, r.ArrivedInTime)
	d.writeInspections(&b)
	return b.String()
}

// Title is the digest's heading for the given schedule.
func (d *Digest) Title(schedule string) string {
	kind := map[string]string{DigestDaily: "日报", DigestWeekly: "周报", DigestMonthly: "月报"}[schedule]
	if kind == "" {
		kind = "统计"
	}
	return "消防预警提示（" + kind + "）· " + d.Place
}

func zhSeconds(s float64) string {
	return zhDuration(time.Duration(s * float64(time.Second)).Round(time.Second))
}

// digestPeriod returns the latest period of schedule that is due at now:
// it ended, and at (e.g. 8 h) has passed since. Periods start at midnight
// China Standard Time: days, weeks from Monday, calendar months. key names
// the period, e.g. "weekly:2026-11-23".
func digestPeriod(schedule string, now time.Time, at time.Duration) (from, to time.Time, key string, ok bool) {
	t := now.In(cst).Add(-at)
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, cst)
	switch schedule {
	case DigestDaily:
		to = day
		from = to.AddDate(0, 0, -1)
	case DigestWeekly:
		to = day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7)) // this week's Monday
		from = to.AddDate(0, 0, -7)
	case DigestMonthly:
		to = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, cst)
		from = to.AddDate(0, -1, 0)
	default:
		return time.Time{}, time.Time{}, "", false
	}
	return from, to, schedule + ":" + from.Format("2006-01-02"), true
}

// digestTargets are the robots that get digests: those of a county (6
// digits) or a town (9 digits) grid.
func (m *Manager) digestTargets() []int {
	var out []int
	for i, r := range m.cfg.Robots {
		if len(r.Grid) == 6 || len(r.Grid) == 9 {
			out = append(out, i)
		}
	}
	return out
}

// SendDueDigests sends every digest due at now that has not been sent:
// the latest period of the schedule, to each county and town robot. A
// digest is recorded as sent once the robot accepted it, so a failed one
// is tried again at the next check and a restart does not repeat a sent
// one. Periods missed while firewatch was down are not sent afterwards:
// only the latest is. It returns how many were sent.
func (m *Manager) SendDueDigests(ctx context.Context, now time.Time) (int, error) {
	m.digestMu.Lock()
	defer m.digestMu.Unlock()
	from, to, key, ok := digestPeriod(m.cfg.Digest, now, m.cfg.DigestAt)
	if !ok {
		return 0, nil
	}
	sent := 0
	var errs []error
	for _, i := range m.digestTargets() {
		r := m.cfg.Robots[i]
		target := robotTarget(r, i)
		done, err := m.store.read.digestSent(ctx, key, target)
		if err != nil {
			return sent, err
		}
		if done {
			continue
		}
		d, err := m.Digest(ctx, r.Grid, from, to)
		if err != nil {
			return sent, fmt.Errorf("digest %s for %s: %w", key, r.Grid, err)
		}
		body, err := robotBody(r.Kind, d.Title(m.cfg.Digest), d.Text(), nil)
		if err != nil {
			return sent, err
		}
		if _, err := m.post(ctx, r.URL, true, key+":"+r.Grid, body); err != nil {
			m.met.digests.WithLabelValues("failed").Inc()
			errs = append(errs, fmt.Errorf("digest %s for %s to %s: %w", key, r.Grid, redact(r.URL), err))
			continue
		}
		if err := m.store.write.markDigestSent(ctx, key, target, r.Grid, time.Now()); err != nil {
			return sent, err
		}
		m.met.digests.WithLabelValues("sent").Inc()
		m.log.Info("digest sent", "period", key, "grid", r.Grid, "robot", r.Kind, "alarms", d.Alarms, "open", d.OpenCount)
		sent++
	}
	return sent, errors.Join(errs...)
}

// digestLoop sends due digests every DigestCheck until ctx ends.
func (m *Manager) digestLoop(ctx context.Context) {
	if m.cfg.Digest == DigestOff || len(m.digestTargets()) == 0 {
		return
	}
	t := time.NewTicker(m.cfg.DigestCheck)
	defer t.Stop()
	for {
		if !m.leading() {
			// another instance on the shared store sends them (shared.go)
		} else if _, err := m.SendDueDigests(ctx, time.Now()); err != nil && ctx.Err() == nil {
			m.log.Warn("digest not sent; retrying at the next check", "err", err, "next", m.cfg.DigestCheck)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
