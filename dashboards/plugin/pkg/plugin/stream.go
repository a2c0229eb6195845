package plugin

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/log"
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// Transition is one change of an alarm's state seen by the stream.
type Transition struct {
	Time                                 time.Time
	ID, From, To, Severity, Device, Grid string
	Station, Actor, Note, Message        string
}

// TransitionsFrame turns transitions into a frame (the stream's schema).
func TransitionsFrame(ts []Transition) *data.Frame {
	n := len(ts)
	tm := make([]time.Time, n)
	cols := make([][]string, 10)
	for i := range cols {
		cols[i] = make([]string, n)
	}
	for i, t := range ts {
		tm[i] = t.Time
		for j, v := range []string{t.ID, t.From, t.To, t.Severity, t.Device, t.Grid, t.Station, t.Actor, t.Note, t.Message} {
			cols[j][i] = v
		}
	}
	f := data.NewFrame("transitions", data.NewField("time", nil, tm))
	for j, name := range []string{"id", "from", "to", "severity", "device", "grid", "station", "actor", "note", "message"} {
		f.Fields = append(f.Fields, data.NewField(name, nil, cols[j]))
	}
	return f
}

// parseStreamPath reads "transitions/<grid|all>/<severity|all>".
func parseStreamPath(p string) (grid, severity string, err error) {
	parts := strings.Split(p, "/")
	if len(parts) != 3 || parts[0] != "transitions" {
		return "", "", fmt.Errorf("unknown stream path %q", p)
	}
	q := Query{Grid: parts[1], Severity: parts[2]}
	if q.Grid, err = url.PathUnescape(q.Grid); err != nil {
		return "", "", err
	}
	if err := q.normalise(); err != nil {
		return "", "", err
	}
	return q.Grid, q.Severity, nil
}

// SubscribeStream admits subscriptions to transition channels.
func (d *Datasource) SubscribeStream(_ context.Context, req *backend.SubscribeStreamRequest) (*backend.SubscribeStreamResponse, error) {
	if _, _, err := parseStreamPath(req.Path); err != nil {
		return &backend.SubscribeStreamResponse{Status: backend.SubscribeStreamStatusNotFound}, nil
	}
	return &backend.SubscribeStreamResponse{Status: backend.SubscribeStreamStatusOK}, nil
}

// PublishStream refuses: the stream is read-only.
func (d *Datasource) PublishStream(context.Context, *backend.PublishStreamRequest) (*backend.PublishStreamResponse, error) {
	return &backend.PublishStreamResponse{Status: backend.PublishStreamStatusPermissionDenied}, nil
}

// RunStream sends alarm transitions as they happen. firewatch's API has no
// push channel yet, so the stream polls it every PollSeconds: it keeps the
// last state of each open or recent alarm and, for each alarm whose state
// changed, reads the alarm's history and sends the changes it had not
// sent. Grafana runs one RunStream per channel, however many panels watch
// it, so the polling cost does not grow with viewers.
func (d *Datasource) RunStream(ctx context.Context, req *backend.RunStreamRequest, sender *backend.StreamSender) error {
	grid, severity, err := parseStreamPath(req.Path)
	if err != nil {
		return err
	}
	w := newWatcher(d.client, grid, severity)
	// The first poll learns the current states; only later changes are sent.
	if err := w.poll(ctx, nil); err != nil {
		log.DefaultLogger.Warn("firewatch stream: first poll failed", "err", err.Error())
	}
	tick := time.NewTicker(d.poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		err := w.poll(ctx, func(ts []Transition) error {
			return sender.SendFrame(TransitionsFrame(ts), data.IncludeAll)
		})
		if err != nil && ctx.Err() == nil {
			log.DefaultLogger.Warn("firewatch stream: poll failed", "err", err.Error())
		}
	}
}

// watcher remembers what the stream has sent.
type watcher struct {
	c              *Client
	grid, severity string
	// state is the last known state of each alarm; sent the number of
	// history entries already sent.
	state map[string]string
	sent  map[string]int
}

func newWatcher(c *Client, grid, severity string) *watcher {
	return &watcher{c: c, grid: grid, severity: severity, state: map[string]string{}, sent: map[string]int{}}
}

// recentLimit is how many of the newest alarms each poll reads besides the
// open ones, so that alarms raised and closed between two polls are seen.
const recentLimit = 200

// poll reads the open and the newest alarms, and the alarms that left the
// open set, and sends (when send is not nil) the transitions since the
// last poll, oldest first.
func (w *watcher) poll(ctx context.Context, send func([]Transition) error) error {
	open, err := w.c.Alarms(ctx, AlarmFilter{State: "open", Grid: w.grid, Severity: w.severity, Limit: 1000})
	if err != nil {
		return err
	}
	recent, err := w.c.Alarms(ctx, AlarmFilter{Grid: w.grid, Severity: w.severity, Limit: recentLimit})
	if err != nil {
		return err
	}
	seen := map[string]Alarm{}
	for _, a := range append(open, recent...) {
		seen[a.ID] = a
	}
	// An alarm known open that is in neither list was closed and has
	// dropped out of the newest ones: read it.
	for id, st := range w.state {
		if _, ok := seen[id]; !ok && !closedStates[st] {
			a, err := w.c.Alarm(ctx, id)
			if err != nil {
				return err
			}
			seen[id] = a
		}
	}
	var out []Transition
	for id, a := range seen {
		old, known := w.state[id]
		if known && old == a.State {
			continue
		}
		w.state[id] = a.State
		if send == nil {
			// First poll: remember, do not replay history.
			if a.History != nil {
				w.sent[id] = len(a.History)
			} else {
				w.sent[id] = -1 // unknown: read on the next change
			}
			continue
		}
		if a.History == nil {
			full, err := w.c.Alarm(ctx, id)
			if err != nil {
				return err
			}
			a.History = full.History
		}
		from := w.sent[id]
		if from < 0 || from > len(a.History) {
			// Known from the first poll without history: send only the
			// changes after the state we knew.
			from = len(a.History)
			for i := len(a.History) - 1; i >= 0; i-- {
				if a.History[i].To == old {
					from = i + 1
					break
				}
			}
		}
		if !known {
			from = 0
		}
		hist := a.History[from:]
		if len(hist) == 0 {
			// A firewatch without history: one transition from what we
			// knew to what it is now.
			hist = []Change{{From: old, To: a.State, At: time.Now()}}
		}
		for _, c := range hist {
			out = append(out, Transition{Time: c.At, ID: a.ID, From: c.From, To: c.To, Severity: a.Severity,
				Device: a.Device, Grid: a.Grid, Station: a.Station, Actor: c.Actor, Note: c.Note, Message: a.Message})
		}
		w.sent[id] = len(a.History)
	}
	// Forget closed alarms that dropped out of the lists.
	for id, st := range w.state {
		if _, ok := seen[id]; !ok && closedStates[st] {
			delete(w.state, id)
			delete(w.sent, id)
		}
	}
	if len(out) == 0 || send == nil {
		return nil
	}
	sortTransitions(out)
	return send(out)
}

func sortTransitions(ts []Transition) {
	for i := 1; i < len(ts); i++ {
		for j := i; j > 0 && ts[j].Time.Before(ts[j-1].Time); j-- {
			ts[j], ts[j-1] = ts[j-1], ts[j]
		}
	}
}
