package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// simResponder plays a micro fire station's member for the demo (issue 16):
// for each fire push that carries a responder link, it taps 接警, 出动 and
// 到场 through the link, one step every `every`, so that the console's
// clocks stop; closing the alarm (处置完毕) is left to the person trying
// the demo. It is a demo pacer, not a test: the waits are its point.
type simResponder struct {
	every  time.Duration
	ctx    context.Context
	out    io.Writer
	client *http.Client
	logf   func(format string, args ...any)
}

// onPush looks at an accepted push body and starts the taps of a fire.
func (s *simResponder) onPush(body []byte) {
	var p struct {
		Transition string `json:"transition"`
		Severity   string `json:"severity"`
		AlarmID    string `json:"alarm_id"`
		Link       string `json:"responder_url"`
	}
	if json.Unmarshal(body, &p) != nil || p.Link == "" || p.Severity != "fire" || p.Transition != "raised" {
		return
	}
	page, token, ok := strings.Cut(p.Link, "#t=")
	if !ok {
		return
	}
	go s.tap(p.AlarmID, page, token)
}

func (s *simResponder) tap(alarm, page, token string) {
	for _, step := range []struct{ action, zh string }{{"ack", "接警"}, {"dispatch", "出动"}, {"arrive", "到场"}} {
		select {
		case <-time.After(s.every):
		case <-s.ctx.Done():
			return
		}
		b, _ := json.Marshal(map[string]string{"action": step.action, "name": "模拟队员"})
		req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, page+"/tap", bytes.NewReader(b))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Responder-Token", token)
		resp, err := s.client.Do(req)
		if err != nil {
			s.logf("simulated responder: %s %s: %v\n", alarm, step.zh, err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		s.logf("simulated responder 模拟队员: %s %s (%s)\n", alarm, step.zh, resp.Status)
		if resp.StatusCode != http.StatusOK {
			return
		}
	}
}

func newSimResponder(ctx context.Context, every time.Duration, out io.Writer, logf func(string, ...any)) *simResponder {
	if logf == nil {
		logf = func(format string, args ...any) { fmt.Fprintf(out, format, args...) }
	}
	return &simResponder{every: every, ctx: ctx, out: out, client: &http.Client{Timeout: 10 * time.Second}, logf: logf}
}
