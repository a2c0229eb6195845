package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/rules"
)

// Dispatch push headers, as firewatch sends them (docs/dispatch.md).
const (
	headerTimestamp   = alarms.HeaderTimestamp
	headerSignature   = alarms.HeaderSignature
	headerIdempotency = alarms.HeaderIdempotencyKey
)

// maxPushBody bounds what the receiver reads of one push.
const maxPushBody = 1 << 20

// maxRemembered bounds the idempotency keys kept for de-duplication; the
// oldest are forgotten first.
const maxRemembered = 100_000

func cmdReceiver(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("receiver",
		"Receive dispatch pushes as a 联勤联调 platform would: POST /dispatch/{station}, check the\n"+
			"HMAC-SHA256 signature (X-Firewatch-Timestamp, X-Firewatch-Signature: sha256=<hex of\n"+
			"HMAC(secret, timestamp + \".\" + body)>), de-duplicate by Idempotency-Key, and print each\n"+
			"push. Answers 200, 401 for a bad signature, 400 without an Idempotency-Key.",
		"  FIREWATCH_DISPATCH_SECRET=devsecret firesim receiver -addr 127.0.0.1:8090\n",
		stderr)
	addr := fs.String("addr", "127.0.0.1:8090", "listen address")
	secret := fs.String("secret", "", "HMAC key of the dispatch pushes (default $FIREWATCH_DISPATCH_SECRET; a flag is visible in ps)")
	respond := fs.Duration("respond", 0, "play a station member: tap 接警, 出动, 到场 through each fire push's responder link, one step every this long (0: off)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	key := envOr(*secret, "FIREWATCH_DISPATCH_SECRET")
	if key == "" {
		fmt.Fprintln(stderr, "firesim receiver: no secret: set FIREWATCH_DISPATCH_SECRET or -secret")
		return errUsage
	}
	rc := newReceiver([]byte(key), stdout)
	if *respond > 0 { // issue 16: simulated responders (responder.go)
		sr := newSimResponder(ctx, *respond, stdout, func(f string, a ...any) { rc.mu.Lock(); fmt.Fprintf(stdout, f, a...); rc.mu.Unlock() })
		rc.onPush = sr.onPush
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "firesim receiver listening on http://%s/dispatch/{station} — 联勤联调接收端已启动\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdown)
	<-errc
	st := rc.stats()
	fmt.Fprintf(stdout, "firesim receiver stopped: received %d, duplicates %d, rejected %d\n", st.accepted, st.duplicates, st.rejected)
	return err
}

// receiver is the dispatch webhook receiver. It is an http.Handler.
type receiver struct {
	secret []byte
	out    io.Writer
	now    func() time.Time
	mux    *http.ServeMux

	mu     sync.Mutex // guards the fields below and serialises out
	seen   map[string]struct{}
	order  []string // seen keys, oldest first
	counts receiverStats
	onPush func(body []byte) // an accepted push; must not block (rc.mu is held)
}

type receiverStats struct{ accepted, duplicates, rejected int }

func newReceiver(secret []byte, out io.Writer) *receiver {
	rc := &receiver{secret: secret, out: out, now: time.Now, seen: map[string]struct{}{}}
	rc.mux = http.NewServeMux()
	rc.mux.HandleFunc("POST /dispatch/{station}", rc.dispatch)
	return rc
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) { rc.mux.ServeHTTP(w, r) }

func (rc *receiver) stats() receiverStats {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.counts
}

// push is what the receiver shows of a dispatch push body. The body is
// firewatch's; only these fields are read, and only for display.
type push struct {
	Severity string `json:"severity"`
	Message  string `json:"message"`
}

func (rc *receiver) dispatch(w http.ResponseWriter, r *http.Request) {
	received := rc.now()
	station := r.PathValue("station")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPushBody))
	if err != nil {
		rc.reject(w, http.StatusRequestEntityTooLarge, "body: "+err.Error())
		return
	}
	ts := r.Header.Get(headerTimestamp)
	key := r.Header.Get(headerIdempotency)
	sigErr := alarms.Verify(rc.secret, ts, body, r.Header.Get(headerSignature))

	var p push
	bodyErr := json.Unmarshal(body, &p)

	rc.mu.Lock()
	defer rc.mu.Unlock()
	if sigErr == nil && key != "" {
		if _, dup := rc.seen[key]; dup {
			rc.counts.duplicates++
			fmt.Fprintf(rc.out, "%s duplicate push %s for %s ignored (重复推送，已忽略)\n\n", received.Format(time.DateTime), key, station)
			writeJSON(w, http.StatusOK, map[string]any{"received": true, "duplicate": true})
			return
		}
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, "── dispatch push 调度推送 %s\n", strings.Repeat("─", 40))
	fmt.Fprintf(&b, "  received   %s\n", received.Format("2006-01-02 15:04:05.000 MST"))
	fmt.Fprintf(&b, "  station    %s\n", station)
	fmt.Fprintf(&b, "  severity   %s\n", severityText(p.Severity))
	switch {
	case bodyErr != nil:
		fmt.Fprintf(&b, "  message    (body is not a JSON object: %v)\n", bodyErr)
	case p.Message == "":
		fmt.Fprintf(&b, "  message    (no message field)\n")
	default:
		fmt.Fprintf(&b, "  message    %s\n", strings.ReplaceAll(p.Message, "\n", "\n             "))
	}
	fmt.Fprintf(&b, "  key        %s\n", orNone(key))
	if sigErr != nil {
		fmt.Fprintf(&b, "  signature  BAD: %v (签名错误)\n\n", sigErr)
	} else {
		fmt.Fprintf(&b, "  signature  OK%s\n\n", age(ts, received))
	}
	rc.out.Write(b.Bytes())

	switch {
	case sigErr != nil:
		rc.counts.rejected++
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "bad signature"})
	case key == "":
		rc.counts.rejected++
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "missing " + headerIdempotency})
	case bodyErr != nil:
		rc.counts.rejected++
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "body is not a JSON object"})
	default:
		rc.remember(key)
		rc.counts.accepted++
		if rc.onPush != nil {
			rc.onPush(body)
		}
		writeJSON(w, http.StatusOK, map[string]any{"received": true})
	}
}

func (rc *receiver) reject(w http.ResponseWriter, code int, reason string) {
	rc.mu.Lock()
	rc.counts.rejected++
	rc.mu.Unlock()
	writeJSON(w, code, map[string]any{"error": reason})
}

// remember records key; rc.mu is held.
func (rc *receiver) remember(key string) {
	if len(rc.order) >= maxRemembered {
		delete(rc.seen, rc.order[0])
		rc.order = rc.order[1:]
	}
	rc.seen[key] = struct{}{}
	rc.order = append(rc.order, key)
}

// severityText shows a severity with its Chinese name: "fire 火警".
func severityText(s string) string {
	if s == "" {
		return "(no severity field)"
	}
	if sev, err := rules.ParseSeverity(s); err == nil {
		return s + " " + sev.ZH()
	}
	return s
}

// age describes how old the push's timestamp (Unix seconds or
// milliseconds) was when it arrived: a large age means a retry from the
// outbox, or clocks apart.
func age(ts string, now time.Time) string {
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ""
	}
	t, unit := time.Unix(n, 0), time.Second
	if n > 1e12 {
		t, unit = time.UnixMilli(n), time.Millisecond
	}
	return fmt.Sprintf(" (timestamp %s, %v before receipt)", t.In(now.Location()).Format(time.TimeOnly), now.Sub(t).Round(unit))
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
