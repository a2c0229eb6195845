package alarms

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseRobots(t *testing.T) {
	rs, err := ParseRobots("450204=wecom:https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k1, 4502=dingtalk:https://oapi.dingtalk.com/robot/send?access_token=t#SECabc")
	if err != nil || len(rs) != 2 || rs[0].Kind != RobotWeCom || rs[0].Grid != "450204" || rs[1].Secret != "SECabc" ||
		rs[1].URL != "https://oapi.dingtalk.com/robot/send?access_token=t" {
		t.Fatalf("ParseRobots: %+v %v", rs, err)
	}
	for _, bad := range []string{"450204", "450204=slack:https://x", "45020=wecom:https://x", "450204=wecom:ftp://x?key=k1",
		"450204=wecom:https://x?key=k1#sec"} {
		if _, err := ParseRobots(bad); err == nil {
			t.Errorf("ParseRobots(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "key=k1") {
			t.Errorf("ParseRobots(%q) error quotes the URL: %v", bad, err)
		}
	}
}

// robotServer is a group-robot webhook that answers like WeCom and
// DingTalk: 200 with an errcode, failing the first request.
type robotServer struct {
	srv  *httptest.Server
	mu   sync.Mutex
	n    int
	reqs chan robotReq
}

type robotReq struct {
	query  string
	body   map[string]any
	header http.Header
}

func newRobotServer(t *testing.T) *robotServer {
	rs := &robotServer{reqs: make(chan robotReq, 10)}
	rs.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body map[string]any
		json.Unmarshal(b, &body)
		rs.mu.Lock()
		rs.n++
		n := rs.n
		rs.mu.Unlock()
		if n == 1 {
			w.Write([]byte(`{"errcode":45009,"errmsg":"api freq out of limit"}`))
			return
		}
		w.Write([]byte(`{"errcode":0,"errmsg":"ok"}`))
		rs.reqs <- robotReq{r.URL.RawQuery, body, r.Header.Clone()}
	}))
	t.Cleanup(rs.srv.Close)
	return rs
}

// TestRobots: an alarm in a robot's grid reaches WeCom and DingTalk duty
// groups as markdown, DingTalk's URL signed afresh on each attempt, an
// errcode answer retried.
func TestRobots(t *testing.T) {
	rc := newReceiver(t)
	wecom, ding := newRobotServer(t), newRobotServer(t)
	l := testLedger(t, rc.srv.URL, rc.srv.URL)
	r := newTestRules(t)
	cfg := testConfig(t)
	var err error
	cfg.Robots, err = ParseRobots("450204001=wecom:" + wecom.srv.URL + "/cgi-bin/webhook/send?key=k1,4502=dingtalk:" +
		ding.srv.URL + "/robot/send?access_token=t#SECsecret,330326=wecom:" + wecom.srv.URL + "/other")
	if err != nil {
		t.Fatal(err)
	}
	m := start(t, cfg, l)
	m.Submit(raise(r.smoke, devSmoke, 0, 1, 0))
	rc.next(t)

	var got robotReq
	select {
	case got = <-wecom.reqs:
	case <-time.After(wait):
		t.Fatal("no WeCom message")
	}
	// The dispatch signature is for dispatch receivers: a robot (a third
	// party's server) never sees it, nor anything keyed with the secret.
	for _, h := range []string{HeaderSignature, HeaderSignatureV2, HeaderRecipient, HeaderTimestamp} {
		if v := got.header.Get(h); v != "" {
			t.Errorf("robot request has %s: %s", h, v)
		}
	}
	md, _ := got.body["markdown"].(map[string]any)
	content, _ := md["content"].(string)
	if got.body["msgtype"] != "markdown" || !strings.HasPrefix(content, "### 【火警】alm-000001\n【火警】") ||
		!strings.Contains(content, "> 设备：sm-450204-0002") || got.query != "key=k1" {
		t.Errorf("WeCom message %v (query %s)", got.body, got.query)
	}
	select {
	case got = <-ding.reqs:
	case <-time.After(wait):
		t.Fatal("no DingTalk message")
	}
	md, _ = got.body["markdown"].(map[string]any)
	if got.body["msgtype"] != "markdown" || md["title"] != "【火警】alm-000001" || !strings.Contains(md["text"].(string), "烟雾报警") {
		t.Errorf("DingTalk message %v", got.body)
	}
	q, _ := parseQuery(got.query)
	ts, _ := strconv.ParseInt(q["timestamp"], 10, 64)
	if q["access_token"] != "t" || time.Since(time.UnixMilli(ts)).Abs() > time.Minute || q["sign"] != DingTalkSign("SECsecret", ts) {
		t.Errorf("DingTalk URL query %q", got.query)
	}
	// Each robot failed once (errcode) and was retried.
	poll(t, "robot deliveries recorded", func() bool {
		robots := 0
		for _, p := range get(t, m.Manager, "alm-000001").Pushes {
			if strings.HasPrefix(p.Target, "robot:") && p.DeliveredAt != nil && p.Attempts == 2 {
				robots++
			}
		}
		return robots == 2
	})
	n := 0
	for _, p := range get(t, m.Manager, "alm-000001").Pushes {
		if strings.HasPrefix(p.Target, "robot:") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d robot pushes, want 2 (the 330326 robot does not cover the device)", n)
	}
}

func parseQuery(raw string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(raw, "&") {
		k, v, _ := strings.Cut(kv, "=")
		uv, err := urlUnescape(v)
		if err != nil {
			return nil, err
		}
		out[k] = uv
	}
	return out, nil
}

func urlUnescape(s string) (string, error) { return url.QueryUnescape(s) }
