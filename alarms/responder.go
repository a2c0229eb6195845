package alarms

// What the responder page and the console (package responder, issue 16)
// need of the manager, kept in this file so that it moves as one piece.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// Alarm returns alarm id with its history, pushes and response times, as
// GET /api/v1/alarms/{id} shows it. An unknown or malformed id returns an
// error wrapping ErrNotFound.
func (m *Manager) Alarm(ctx context.Context, id string) (Alarm, error) {
	n, err := parseID(id)
	if err != nil {
		return Alarm{}, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return m.store.get(ctx, n)
}

// RequireActor is Require for a handler that needs the name of the token
// (the actor recorded with a change).
func (m *Manager) RequireActor(min Role, h func(w http.ResponseWriter, r *http.Request, actor string)) http.HandlerFunc {
	return m.auth.require(min, h)
}

// ErrNoStation is returned by Redispatch for a station that is not in the
// ledger or has no dispatch endpoint.
var ErrNoStation = errors.New("no such station with a dispatch endpoint")

// Redispatch sends open alarm id to another station (改派), on behalf of
// actor: the alarm's station becomes station, its history records the
// change, and a push goes to the new station (an escalation push, so that
// the station is told when the alarm is closed) and to the robots of the
// alarm's grid. The alarm's clocks keep running from its raise.
// Redispatching to the alarm's own station is a no-op.
func (m *Manager) Redispatch(ctx context.Context, id, station, actor, note string) (Alarm, error) {
	n, err := parseID(id)
	if err != nil {
		return Alarm{}, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if actor == "" {
		return Alarm{}, errors.New("redispatch without an actor")
	}
	if len(note) > MaxNote || !utf8.ValidString(note) {
		return Alarm{}, fmt.Errorf("%w: note must be valid UTF-8 of at most %d bytes", ErrIllegalTransition, MaxNote)
	}
	st := m.led().Station(station)
	if st == nil || st.Endpoint == "" {
		return Alarm{}, fmt.Errorf("station %q: %w", station, ErrNoStation)
	}
	tx, err := m.store.begin(ctx)
	if err != nil {
		return Alarm{}, err
	}
	defer tx.rollback()
	a, err := tx.alarm(ctx, n)
	if err != nil {
		return Alarm{}, fmt.Errorf("read alarm %s: %w", formatID(n), err)
	}
	if !a.Open {
		return Alarm{}, fmt.Errorf("%w: alarm %s is closed (%s)", ErrIllegalTransition, a.ID, a.State)
	}
	if a.Station == st.ID {
		return m.store.get(ctx, n)
	}
	now := m.now()
	ok, err := tx.setStation(ctx, n, a.Station, st.ID)
	if err != nil {
		return Alarm{}, fmt.Errorf("redispatch alarm %s: %w", a.ID, err)
	}
	if !ok {
		return Alarm{}, fmt.Errorf("alarm %s: %w", a.ID, ErrConflict)
	}
	from := a.Station
	if old := m.led().Station(a.Station); old != nil {
		from = old.Name
	}
	text := "改派至 " + st.Name + "（原 " + from + "）"
	if note != "" {
		text += "：" + note
	}
	if err := tx.record(ctx, n, a.State, a.State, now, actor, text); err != nil {
		return Alarm{}, err
	}
	count, err := tx.redispatches(ctx, n)
	if err != nil {
		return Alarm{}, fmt.Errorf("count redispatches of alarm %s: %w", a.ID, err)
	}
	a.Station = st.ID
	p := m.alarmPush(&a)
	p.Transition = TransitionEscalated
	p.IdempotencyKey = fmt.Sprintf("%s-redispatch-%d", a.ID, count)
	p.Message = "【改派·" + p.SeverityZH + "】报警 " + a.ID + " 由指挥中心 " + actor + " 改派 " + st.Name + "，请立即处置。" + p.Message
	body, err := json.Marshal(p)
	if err != nil {
		return Alarm{}, fmt.Errorf("encode push %s: %w", p.IdempotencyKey, err)
	}
	eps, err := m.queue(ctx, tx, newPush{alarmID: n, transition: TransitionEscalated, key: p.IdempotencyKey, body: body},
		[]pushTarget{{"station", st.ID, st.Endpoint}},
		robotMessage{grids: []string{a.Grid}, title: "【改派·" + p.SeverityZH + "】" + a.ID, text: p.Message, fields: pushFields(&p)}, now)
	if err != nil {
		return Alarm{}, err
	}
	if err := tx.commit(); err != nil {
		return Alarm{}, err
	}
	m.log.Warn("alarm redispatched", "alarm", a.ID, "station", st.ID, "from", from, "actor", actor)
	m.after([]effect{{alarm: a, transition: TransitionEscalated, endpoints: eps}})
	return m.store.get(ctx, n)
}

// withResponderLink returns the body of one push attempt with the
// responder page link of its alarm added (Config.ResponderLink): a
// "responder_url" key and a line at the end of "message" in a dispatch
// push, a markdown link at the end of a robot message. The link is made at
// delivery, not stored: it carries a signed token that must not sit in the
// store or its backups, and a retry gets a fresh expiry. Pushes of closed
// alarms, and bodies that cannot be read, go out unchanged: the link is a
// convenience, never a reason to hold a push back.
func (m *Manager) withResponderLink(ctx context.Context, row *outboxRow) []byte {
	if m.cfg.ResponderLink == nil {
		return row.body
	}
	// The link is for the station the push goes to (a helper station of
	// an escalation, a re-dispatch), which the outbox row names; robots
	// get the alarm's station.
	station, open, pushStation, err := m.store.read.pushStations(ctx, row.alarmID, row.id)
	if err != nil || !open {
		return row.body
	}
	robot := strings.HasPrefix(row.target, "robot:")
	switch {
	case robot:
	case row.target == "station":
		if pushStation != "" {
			station = pushStation
		}
	case row.target == "brigade":
		station = RecipientBrigade
	case strings.HasPrefix(row.target, "station:"):
		station = strings.TrimPrefix(row.target, "station:")
	default:
		return row.body
	}
	link := m.cfg.ResponderLink(formatID(row.alarmID), station, msTime(row.created))
	if link == "" {
		return row.body
	}
	if robot {
		var b struct {
			MsgType  string            `json:"msgtype"`
			Markdown map[string]string `json:"markdown"`
		}
		if err := json.Unmarshal(row.body, &b); err != nil || b.MsgType != "markdown" {
			return row.body
		}
		k := "text"
		if _, ok := b.Markdown["content"]; ok {
			k = "content" // WeCom
		}
		text := b.Markdown[k] + "\n\n[一键处置：接警 / 出动 / 到场 / 处置完毕](" + link + ")"
		if k == "content" && len(text) > 4096 {
			return row.body
		}
		b.Markdown[k] = text
		out, err := json.Marshal(b)
		if err != nil {
			return row.body
		}
		return out
	}
	var p map[string]json.RawMessage
	if err := json.Unmarshal(row.body, &p); err != nil {
		return row.body
	}
	var msg string
	if err := json.Unmarshal(p["message"], &msg); err != nil {
		return row.body
	}
	mb, _ := json.Marshal(msg + "一键处置：" + link)
	lb, _ := json.Marshal(link)
	p["message"], p["responder_url"] = mb, lb
	if raw, ok := p["alarms"]; ok && row.transition == TransitionIncident {
		if al, ok := m.incidentLinks(raw, station, msTime(row.created)); ok {
			p["alarms"] = al
		}
	}
	out, err := json.Marshal(p)
	if err != nil {
		return row.body
	}
	return out
}

// incidentLinks gives each alarm an incident push lists (at most
// MaxIncidentAlarms) its own responder link for station, when the alarm
// was open as listed: the station acts on each alarm of a storm from the
// push, not only on the first.
func (m *Manager) incidentLinks(raw json.RawMessage, station string, issued time.Time) (json.RawMessage, bool) {
	var as []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &as); err != nil {
		return nil, false
	}
	for _, a := range as {
		var id, state string
		if json.Unmarshal(a["alarm_id"], &id) != nil || json.Unmarshal(a["state"], &state) != nil || !State(state).Open() {
			continue
		}
		if link := m.cfg.ResponderLink(id, station, issued); link != "" {
			a["responder_url"], _ = json.Marshal(link)
		}
	}
	out, err := json.Marshal(as)
	return out, err == nil
}

// Member is a person who acted on alarms through a responder link: their
// name, the station of the link, how many changes they made since the
// time asked for, and the last one.
type Member struct {
	Name    string    `json:"name"`
	Station string    `json:"station"`
	Changes int       `json:"changes"`
	Last    time.Time `json:"last"`
}

// Members lists the people who acted through responder links (actors
// "name@station") since the given time, most recent first, at most limit.
func (m *Manager) Members(ctx context.Context, since time.Time, limit int) ([]Member, error) {
	ms, err := m.store.read.members(ctx, since, limit)
	if err != nil {
		return nil, err
	}
	for i := range ms {
		// The actor is name@station; a name may hold an @.
		actor := ms[i].Name
		j := strings.LastIndexByte(actor, '@')
		ms[i].Name, ms[i].Station = actor[:j], actor[j+1:]
	}
	return ms, nil
}
