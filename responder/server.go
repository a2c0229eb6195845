package responder

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/httpjson"
)

//go:embed static
var staticFS embed.FS

// HeaderToken carries the link token from the page to firewatch.
const HeaderToken = "X-Responder-Token"

// Config configures a Server.
type Config struct {
	Alarms *alarms.Manager
	Ledger *devices.Ledger
	// Registry, if set, is the live registry (issue 18): its snapshot in
	// force replaces Ledger.
	Registry *devices.Live
	Signer   *Signer
	// Readings reads the device's last hour and the hydrants' pressure
	// from InfluxDB (issue 16); nil: the page says there is no data.
	Readings Readings
	// Rate and Burst limit the requests per client address on the link
	// endpoints (/r/...): Rate per second, bursts of Burst (defaults 2, 40).
	Rate  float64
	Burst int
	// Stream bounds one live-update stream (default 30m); the page
	// reconnects.
	Stream     time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer // may be nil
	// Console: the map's tiles (tiles.go).
	Console ConsoleConfig
}

// Server serves the responder page and the console.
type Server struct {
	cfg     Config
	log     *slog.Logger
	hub     hub
	limiter *limiter
	met     metrics
	// done ends the live-update streams at shutdown.
	done     chan struct{}
	doneOnce sync.Once
	// follow counts the goroutines of followDelivery; Close waits for them.
	follow sync.WaitGroup
}

type metrics struct {
	refused     *prometheus.CounterVec
	taps        *prometheus.CounterVec
	limited     prometheus.Counter
	streams     prometheus.Gauge
	redispatch  prometheus.Counter
	dropUpdates prometheus.Counter
	// readingsFailed: issue 16, readings.go.
	readingsFailed prometheus.Counter
}

// New returns a Server. Register its routes with Register, tell it of
// alarm changes with Notify, and Close it when the HTTP server shuts down.
func New(cfg Config) (*Server, error) {
	if cfg.Alarms == nil || cfg.Ledger == nil || cfg.Signer == nil {
		return nil, errors.New("responder: Alarms, Ledger and Signer are required")
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 2
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 40
	}
	if cfg.Stream <= 0 {
		cfg.Stream = 30 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Console.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, done: make(chan struct{}), limiter: newLimiter(cfg.Rate, cfg.Burst)}
	s.hub.subs = map[*sub]struct{}{}
	s.met = metrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "firewatch_responder_links_refused_total",
			Help: "Responder link requests refused, by reason (expired, bad_signature, other_alarm, malformed, missing)."}, []string{"reason"}),
		taps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "firewatch_responder_taps_total",
			Help: "Taps on the responder page, by action and result (ok, noop, conflict, bad, error)."}, []string{"action", "result"}),
		limited: prometheus.NewCounter(prometheus.CounterOpts{Name: "firewatch_responder_rate_limited_total",
			Help: "Requests to responder link endpoints refused by the per-address rate limit."}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{Name: "firewatch_responder_streams",
			Help: "Open live-update streams of responder pages and consoles."}),
		redispatch: prometheus.NewCounter(prometheus.CounterOpts{Name: "firewatch_console_redispatch_total",
			Help: "Alarms re-dispatched to another station from the console."}),
		dropUpdates: prometheus.NewCounter(prometheus.CounterOpts{Name: "firewatch_responder_updates_dropped_total",
			Help: "Live updates not sent to a slow stream (it is told to reload instead)."}),
	}
	s.met.readingsFailed = prometheus.NewCounter(prometheus.CounterOpts{Name: "firewatch_responder_readings_failed_total",
		Help: "Responder pages whose device chart or hydrant pressures InfluxDB did not answer (the page shows the alarm without them)."})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.met.refused, s.met.taps, s.met.limited, s.met.streams, s.met.redispatch, s.met.dropUpdates, s.met.readingsFailed} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("responder metrics: %w", err)
			}
		}
	}
	for _, r := range []string{"expired", "bad_signature", "other_alarm", "malformed", "missing"} {
		s.met.refused.WithLabelValues(r)
	}
	return s, nil
}

// Close ends every live-update stream (http.Server.Shutdown does not
// cancel requests in flight: register Close with RegisterOnShutdown).
func (s *Server) Close() {
	// Under the hub's lock: Notify starts followers under it, and only
	// while done is open, so none starts once Wait has begun.
	s.hub.mu.Lock()
	s.doneOnce.Do(func() { close(s.done) })
	s.hub.mu.Unlock()
	s.follow.Wait()
}

// Register adds the routes: the responder page under /r/, the console
// under /console, their files under /ui/.
func (s *Server) Register(mux *http.ServeMux) {
	m := s.cfg.Alarms
	mux.HandleFunc("GET /r/{id}", s.limited(s.page("static/responder.html")))
	mux.HandleFunc("GET /r/{id}/state", s.limited(s.link(s.serveState)))
	mux.HandleFunc("POST /r/{id}/tap", s.limited(s.link(s.serveTap)))
	mux.HandleFunc("GET /r/{id}/events", s.limited(s.link(s.serveLinkEvents)))
	mux.HandleFunc("GET /r/{id}/readings", s.limited(s.link(s.serveReadings)))
	sub, _ := fs.Sub(staticFS, "static")
	files := http.FileServerFS(sub)
	mux.Handle("GET /ui/", http.StripPrefix("/ui/", secure(files)))
	mux.HandleFunc("GET /console", s.consolePage())
	mux.HandleFunc("GET /console/events", m.RequireActor(alarms.RoleViewer, s.serveConsoleEvents))
	mux.HandleFunc("GET /console/api/map", m.RequireActor(alarms.RoleViewer, s.serveMap))
	mux.HandleFunc("GET /console/api/members", m.RequireActor(alarms.RoleViewer, s.serveMembers))
	mux.HandleFunc("GET /console/api/stats.csv", m.RequireActor(alarms.RoleViewer, s.serveStatsCSV))
	mux.HandleFunc("POST /console/api/alarms/{id}/redispatch", m.RequireActor(alarms.RoleOperator, s.serveRedispatch))
}

// csp is the pages' Content-Security-Policy (the console's adds the tile
// host to img-src: tiles.go).
const csp = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// secure sets the headers every page and file gets: no inline script, no
// framing, no referrer, not cached (a page shows a live alarm).
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

func (s *Server) page(name string) http.HandlerFunc {
	b, err := staticFS.ReadFile(name)
	if err != nil {
		panic(err) // embedded: cannot happen
	}
	return secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(b)
	})).ServeHTTP
}

// limited applies the per-address rate limit.
func (s *Server) limited(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		if !s.limiter.allow(host, time.Now()) {
			s.met.limited.Inc()
			w.Header().Set("Retry-After", "5")
			writeError(w, http.StatusTooManyRequests, "请求过于频繁，请稍后再试")
			return
		}
		h(w, r)
	}
}

// link checks the request's link token against the alarm of its path.
func (s *Server) link(h func(w http.ResponseWriter, r *http.Request, c Claims)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := s.cfg.Signer.Check(r.Header.Get(HeaderToken), r.PathValue("id"))
		if err != nil {
			s.met.refused.WithLabelValues(reason(err)).Inc()
			msg := "链接无效"
			if errors.Is(err, ErrExpired) {
				msg = "链接已过期，请向指挥中心索取新的链接"
			}
			writeError(w, http.StatusForbidden, msg)
			return
		}
		h(w, r, c)
	}
}

// view is what the responder page shows.
type view struct {
	Alarm   alarms.Alarm `json:"alarm"`
	You     stationView  `json:"you"`
	Station stationView  `json:"station"`
	Device  deviceView   `json:"device"`
	// MetricZH names the alarm's metric.
	MetricZH string        `json:"metric_zh"`
	StateZH  string        `json:"state_zh"`
	Hydrants []hydrantView `json:"hydrants"`
	Nav      *navView      `json:"nav,omitempty"`
	// RespondS and ArriveS are the targets (1 and 3 minutes).
	RespondS float64   `json:"respond_target_s"`
	ArriveS  float64   `json:"arrive_target_s"`
	Expires  time.Time `json:"link_expires"`
	Now      time.Time `json:"now"`
}

type stationView struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type deviceView struct {
	ID      string   `json:"id"`
	KindZH  string   `json:"kind_zh"`
	Model   string   `json:"model,omitempty"`
	Address string   `json:"address,omitempty"`
	Place   string   `json:"place,omitempty"`
	Unit    string   `json:"unit,omitempty"`
	Phone   string   `json:"phone,omitempty"`
	Contact string   `json:"contact,omitempty"` // 责任人 (issue 18)
	Lat     *float64 `json:"lat,omitempty"`
	Lon     *float64 `json:"lon,omitempty"`
}

type hydrantView struct {
	ID       string  `json:"id"`
	Address  string  `json:"address,omitempty"`
	Distance float64 `json:"distance_m"`
	Lat      float64 `json:"lat"`
	Lon      float64 `json:"lon"`
	Nav      navView `json:"nav"`
}

type navView struct {
	Amap  string `json:"amap"`
	Baidu string `json:"baidu"`
}

// nav returns map links to (lat, lon), WGS-84 as in the ledger: 高德's
// and 百度's URI APIs convert the coordinates themselves and open the app
// when it is installed.
func nav(lat, lon float64, name string) navView {
	ll := strconv.FormatFloat(lat, 'f', 6, 64)
	lo := strconv.FormatFloat(lon, 'f', 6, 64)
	q := url.QueryEscape(name)
	return navView{
		Amap:  "https://uri.amap.com/marker?position=" + lo + "," + ll + "&name=" + q + "&coordinate=wgs84&callnative=1&src=firewatch",
		Baidu: "https://api.map.baidu.com/marker?location=" + ll + "," + lo + "&title=" + q + "&content=" + q + "&coord_type=wgs84&output=html&src=firewatch",
	}
}

// distance is the great-circle distance in metres.
func distance(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371000
	rad := math.Pi / 180
	dlat, dlon := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dlon/2)*math.Sin(dlon/2)
	return 2 * r * math.Asin(math.Sqrt(a))
}

// hydrants nearest to (lat, lon): at most 3 within 2 km.
const (
	maxHydrants     = 3
	hydrantRadiusM  = 2000
	stationBrigade  = alarms.RecipientBrigade
	brigadeNameZH   = "消防救援大队"
	maxNameRunes    = 20
	maxTapBodyBytes = 8 << 10
)

func (s *Server) stationName(id string) string {
	if id == stationBrigade {
		return brigadeNameZH
	}
	if st := s.led().Station(id); st != nil {
		return st.Name
	}
	return id
}

func (s *Server) makeView(a alarms.Alarm, c Claims) view {
	a.Pushes, a.Commands = nil, nil // delivery internals are the console's business
	v := view{Alarm: a, You: stationView{c.Station, s.stationName(c.Station)}, Station: stationView{a.Station, s.stationName(a.Station)},
		StateZH: StateZH(a.State), RespondS: alarms.RespondTarget.Seconds(), ArriveS: alarms.ArriveTarget.Seconds(),
		Expires: c.Expires, Now: time.Now(), Hydrants: []hydrantView{}}
	d, ok := s.led().LookupID(a.Device)
	if !ok {
		v.Device = deviceView{ID: a.Device}
		return v
	}
	v.Device = deviceView{ID: d.ID, KindZH: d.Kind.ZH(), Model: d.Model, Address: d.Address, Place: s.led().PlaceName(d.Grid),
		Unit: d.Unit, Phone: d.Phone, Contact: d.Contact}
	if mt, ok := devices.MetricByName(d.Kind, a.Metric); ok {
		v.MetricZH = mt.Info().ZH
	}
	if d.Lat == 0 && d.Lon == 0 { // the ledger's "not given"
		return v
	}
	lat, lon := d.Lat, d.Lon
	v.Device.Lat, v.Device.Lon = &lat, &lon
	n := nav(lat, lon, d.Address)
	v.Nav = &n
	for i := range s.led().Devices {
		h := &s.led().Devices[i]
		if h.Removed || h.Kind != devices.KindHydrant || (h.Lat == 0 && h.Lon == 0) {
			continue
		}
		if m := distance(lat, lon, h.Lat, h.Lon); m <= hydrantRadiusM {
			v.Hydrants = append(v.Hydrants, hydrantView{ID: h.ID, Address: h.Address, Distance: math.Round(m), Lat: h.Lat, Lon: h.Lon,
				Nav: nav(h.Lat, h.Lon, "消火栓 "+h.Address)})
		}
	}
	sort.Slice(v.Hydrants, func(i, j int) bool { return v.Hydrants[i].Distance < v.Hydrants[j].Distance })
	if len(v.Hydrants) > maxHydrants {
		v.Hydrants = v.Hydrants[:maxHydrants]
	}
	return v
}

func (s *Server) serveState(w http.ResponseWriter, r *http.Request, c Claims) {
	a, err := s.cfg.Alarms.Alarm(r.Context(), c.Alarm)
	if err != nil {
		s.alarmError(w, c.Alarm, err)
		return
	}
	writeJSON(w, http.StatusOK, s.makeView(a, c))
}

func (s *Server) alarmError(w http.ResponseWriter, id string, err error) {
	if errors.Is(err, alarms.ErrNotFound) {
		writeError(w, http.StatusNotFound, "报警不存在")
		return
	}
	s.log.Error("responder: reading alarm failed", "alarm", id, "err", err)
	writeError(w, http.StatusInternalServerError, "读取报警失败，请稍后重试")
}

// tap is the body of POST /r/{id}/tap.
type tap struct {
	// Action is ack (接警), dispatch (出动), arrive (到场) or close (处置完毕).
	Action string `json:"action"`
	// Name is the person's name, as they typed it once on their phone.
	Name string `json:"name"`
	// Cause closes the alarm: fire (真实火情), false (误报), fault (设备故障)
	// or test (测试).
	Cause string `json:"cause,omitempty"`
	Note  string `json:"note,omitempty"`
	// Lat, Lon and Accuracy (metres) are the browser's position at 到场,
	// when the person allowed it.
	Lat      *float64 `json:"lat,omitempty"`
	Lon      *float64 `json:"lon,omitempty"`
	Accuracy *float64 `json:"accuracy,omitempty"`
}

// causes maps a closing cause to the state and its words in the note. A
// device fault closes as a false alarm: there was no fire, and the 考核
// counts it with the false alarms; the note keeps the difference.
var causes = map[string]struct {
	state alarms.State
	zh    string
}{
	"fire":  {alarms.StateResolved, "真实火情"},
	"false": {alarms.StateFalseAlarm, "误报"},
	"fault": {alarms.StateFalseAlarm, "设备故障"},
	"test":  {alarms.StateTest, "测试"},
}

// steps orders the open states a tap moves through.
var steps = map[alarms.State]int{
	alarms.StateRaised: 0, alarms.StatePushed: 0, alarms.StateReceived: 0,
	alarms.StateAcknowledged: 1, alarms.StateDispatched: 2, alarms.StateArrived: 3,
}

var tapTo = map[string]alarms.State{"ack": alarms.StateAcknowledged, "dispatch": alarms.StateDispatched, "arrive": alarms.StateArrived}

// checkName accepts a person's name: 1 to 20 letters, digits, spaces or ·.
func checkName(n string) (string, bool) {
	n = strings.TrimSpace(n)
	if n == "" || utf8.RuneCountInString(n) > maxNameRunes {
		return "", false
	}
	for _, r := range n {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != ' ' && r != '·' && r != '.' && r != '-' && r != '_' {
			return "", false
		}
	}
	return n, true
}

func (s *Server) serveTap(w http.ResponseWriter, r *http.Request, c Claims) {
	// A write: JSON only. A form or another site's script cannot send
	// the token header without a CORS preflight, which firewatch never
	// answers; an Origin, when the browser sends one, must be ours.
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "需要 JSON")
		return
	}
	if o := r.Header.Get("Origin"); o != "" {
		if u, err := url.Parse(o); err != nil || u.Host != r.Host {
			writeError(w, http.StatusForbidden, "来源不符")
			return
		}
	}
	var t tap
	dec := json.NewDecoder(io.LimitReader(r.Body, maxTapBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		s.met.taps.WithLabelValues("invalid", "bad").Inc()
		writeError(w, http.StatusBadRequest, "请求格式错误")
		return
	}
	name, ok := checkName(t.Name)
	if !ok {
		s.met.taps.WithLabelValues("invalid", "bad").Inc()
		writeError(w, http.StatusBadRequest, "请填写姓名（最多 20 个字）")
		return
	}
	if len(t.Note) > 1000 || !utf8.ValidString(t.Note) {
		writeError(w, http.StatusBadRequest, "备注过长")
		return
	}
	action := t.Action
	var to alarms.State
	note := strings.TrimSpace(t.Note)
	switch action {
	case "ack", "dispatch", "arrive":
		to = tapTo[action]
	case "close":
		cs, ok := causes[t.Cause]
		if !ok {
			s.met.taps.WithLabelValues(action, "bad").Inc()
			writeError(w, http.StatusBadRequest, "请选择处置结果：真实火情 / 误报 / 设备故障 / 测试")
			return
		}
		to = cs.state
		if note != "" {
			note = "原因：" + cs.zh + "；" + note
		} else {
			note = "原因：" + cs.zh
		}
	default:
		s.met.taps.WithLabelValues("invalid", "bad").Inc()
		writeError(w, http.StatusBadRequest, "未知操作")
		return
	}
	a, err := s.cfg.Alarms.Alarm(r.Context(), c.Alarm)
	if err != nil {
		s.alarmError(w, c.Alarm, err)
		return
	}
	// A replayed tap (a second tap, a retry after a lost answer, another
	// member a moment later) changes nothing and says so.
	if !a.Open || (action != "close" && steps[a.State] >= steps[to]) {
		if action == "close" && a.State != to {
			s.met.taps.WithLabelValues(action, "conflict").Inc()
			writeJSON(w, http.StatusConflict, map[string]any{"error": "报警已关闭（" + StateZH(a.State) + "）", "view": s.makeView(a, c)})
			return
		}
		s.met.taps.WithLabelValues(action, "noop").Inc()
		writeJSON(w, http.StatusOK, map[string]any{"noop": true, "view": s.makeView(a, c)})
		return
	}
	if action == "arrive" && t.Lat != nil && t.Lon != nil && validLatLon(*t.Lat, *t.Lon) {
		note = fmt.Sprintf("到场位置 %.6f,%.6f", *t.Lat, *t.Lon)
		if t.Accuracy != nil && *t.Accuracy > 0 && *t.Accuracy < 1e5 {
			note += fmt.Sprintf("（精度 %.0f 米）", *t.Accuracy)
		}
		if d, ok := s.led().LookupID(a.Device); ok && (d.Lat != 0 || d.Lon != 0) {
			note += fmt.Sprintf("，距设备 %.0f 米", distance(*t.Lat, *t.Lon, d.Lat, d.Lon))
		}
		if t.Note != "" {
			note += "；" + strings.TrimSpace(t.Note)
		}
	}
	actor := name + "@" + c.Station
	a, err = s.cfg.Alarms.Transition(r.Context(), c.Alarm, to, actor, note)
	switch {
	case errors.Is(err, alarms.ErrIllegalTransition), errors.Is(err, alarms.ErrConflict):
		s.met.taps.WithLabelValues(action, "conflict").Inc()
		cur, _ := s.cfg.Alarms.Alarm(r.Context(), c.Alarm)
		msg := "当前状态为“" + StateZH(cur.State) + "”，不能" + actionZH[action]
		if cur.Open {
			switch next := steps[cur.State] + 1; {
			case next == 1:
				msg += "：请先点击“接警”"
			case next == 2 && action != "close":
				msg += "：请先点击“出动”"
			case next == 3:
				msg += "：请先点击“到场”"
			}
		}
		writeJSON(w, http.StatusConflict, map[string]any{"error": msg, "view": s.makeView(cur, c)})
	case err != nil:
		s.met.taps.WithLabelValues(action, "error").Inc()
		s.alarmError(w, c.Alarm, err)
	default:
		s.met.taps.WithLabelValues(action, "ok").Inc()
		writeJSON(w, http.StatusOK, map[string]any{"view": s.makeView(a, c)})
	}
}

var actionZH = map[string]string{"ack": "接警", "dispatch": "出动", "arrive": "到场", "close": "处置完毕"}

func validLatLon(lat, lon float64) bool {
	return !math.IsNaN(lat) && !math.IsNaN(lon) && lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180
}

// StateZH names an alarm state for people.
func StateZH(st alarms.State) string {
	switch st {
	case alarms.StateRaised:
		return "已报警"
	case alarms.StatePushed:
		return "已推送"
	case alarms.StateReceived:
		return "已接收"
	case alarms.StateAcknowledged:
		return "已接警"
	case alarms.StateDispatched:
		return "已出动"
	case alarms.StateArrived:
		return "已到场"
	case alarms.StateResolved:
		return "已处置"
	case alarms.StateFalseAlarm:
		return "误报"
	case alarms.StateTest:
		return "测试"
	case alarms.StateAutoCleared:
		return "已自动恢复"
	}
	return string(st)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Cache-Control", "no-store")
	httpjson.Write(w, status, v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// limiter is a token bucket per client address.
type limiter struct {
	mu      sync.Mutex
	rate    float64
	burst   float64
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), buckets: map[string]*bucket{}}
}

func (l *limiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		// Forget full buckets, so that the map holds recent clients only.
		for k, b := range l.buckets {
			if b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// led is the registry snapshot in force.
func (s *Server) led() *devices.Ledger {
	if s.cfg.Registry != nil {
		return s.cfg.Registry.Load()
	}
	return s.cfg.Ledger
}
