package alarms

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
)

// Robot is a group-robot webhook (群机器人) of a duty group in WeCom
// (企业微信) or DingTalk (钉钉) that gets a markdown message for every push of
// the alarms in its grid.
type Robot struct {
	// Grid is the administrative code prefix the robot covers.
	Grid string
	// Kind is "wecom" or "dingtalk".
	Kind string
	URL  string
	// Secret is DingTalk's signing secret ("SEC…"), if the robot has
	// 加签 enabled; never logged nor stored.
	Secret string
}

// Robot kinds.
const (
	RobotWeCom    = "wecom"
	RobotDingTalk = "dingtalk"
)

// ParseRobots parses the robots setting: comma-separated entries of
// grid=kind:url, with "#secret" after a DingTalk URL that signs, e.g.
// "450204=wecom:https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…".
// Errors never quote a URL (it holds the robot's key).
func ParseRobots(s string) ([]Robot, error) {
	var (
		out  []Robot
		errs []error
	)
	for i, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		grid, rest, ok1 := strings.Cut(e, "=")
		kind, u, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 {
			errs = append(errs, fmt.Errorf("robot %d: want grid=kind:url", i+1))
			continue
		}
		p, err := devices.ParsePrefix(grid)
		if err != nil {
			errs = append(errs, fmt.Errorf("robot %d: %w", i+1, err))
			continue
		}
		r := Robot{Grid: p, Kind: kind}
		r.URL, r.Secret, _ = strings.Cut(u, "#")
		if kind != RobotWeCom && kind != RobotDingTalk {
			errs = append(errs, fmt.Errorf("robot %d: kind %q: want wecom or dingtalk", i+1, kind))
			continue
		}
		if pu, err := url.Parse(r.URL); err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
			errs = append(errs, fmt.Errorf("robot %d (%s %s): not an http(s) URL", i+1, kind, grid))
			continue
		}
		if r.Secret != "" && kind != RobotDingTalk {
			errs = append(errs, fmt.Errorf("robot %d: only dingtalk robots take a #secret", i+1))
			continue
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

// robotBody is the markdown message of a push for a robot of the given
// kind: WeCom {"msgtype":"markdown","markdown":{"content":…}} (at most 4096
// bytes), DingTalk {"msgtype":"markdown","markdown":{"title":…,"text":…}}.
func robotBody(kind, title, message string, fields [][2]string) ([]byte, error) {
	var b strings.Builder
	b.WriteString("### " + title + "\n")
	b.WriteString(message + "\n")
	for _, f := range fields {
		if f[1] != "" {
			b.WriteString("\n> " + f[0] + "：" + f[1])
		}
	}
	text := b.String()
	if kind == RobotWeCom {
		for len(text) > 4000 {
			cut := strings.LastIndex(text[:4000], "\n")
			if cut <= 0 {
				cut = 3990
			}
			text = strings.ToValidUTF8(text[:cut], "") + "\n…"
		}
		return json.Marshal(map[string]any{"msgtype": "markdown", "markdown": map[string]string{"content": text}})
	}
	return json.Marshal(map[string]any{"msgtype": "markdown", "markdown": map[string]string{"title": title, "text": text}})
}

// DingTalkSign returns DingTalk's signature for a signed robot (加签): the
// base64 HMAC-SHA256, keyed with the secret, of timestamp (Unix ms) + "\n" +
// secret. It goes into the URL as &timestamp=…&sign=… (URL-encoded).
func DingTalkSign(secret string, timestampMs int64) string {
	ts := strconv.FormatInt(timestampMs, 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "\n" + secret))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// robotURL is the URL of one attempt: DingTalk signed robots get a fresh
// timestamp and signature each time.
func (m *Manager) robotURL(endpoint string) string {
	for _, r := range m.cfg.Robots {
		if r.URL == endpoint && r.Kind == RobotDingTalk && r.Secret != "" {
			now := time.Now().UnixMilli()
			sep := "?"
			if strings.Contains(endpoint, "?") {
				sep = "&"
			}
			return endpoint + sep + "timestamp=" + strconv.FormatInt(now, 10) + "&sign=" + url.QueryEscape(DingTalkSign(r.Secret, now))
		}
	}
	return endpoint
}

// robotAnswer checks a robot's reply: both answer 200 with
// {"errcode": 0, "errmsg": "ok"}, and an error code otherwise.
func robotAnswer(body []byte) error {
	var r struct {
		Code *int   `json:"errcode"`
		Msg  string `json:"errmsg"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Code == nil {
		return fmt.Errorf("robot answer is not {\"errcode\":…}: %.100s", body)
	}
	if *r.Code != 0 {
		return &robotError{code: *r.Code, msg: r.Msg}
	}
	return nil
}

// robotError is a robot's answer with a non-zero errcode.
type robotError struct {
	code int
	msg  string
}

func (e *robotError) Error() string { return fmt.Sprintf("robot errcode %d: %s", e.code, e.msg) }

// transient reports whether the robot may take the message later: system
// busy (-1) and the rate limits of WeCom (45009, 20 messages a minute) and
// DingTalk (130101). Every other errcode (a removed robot, a wrong key, a
// keyword or size check failing) refuses the message for good.
func (e *robotError) transient() bool {
	return e.code == -1 || e.code == 45009 || e.code == 130101
}

// robotTarget names robot i of the configuration as an outbox target (and
// a digest's receiver).
func robotTarget(r Robot, i int) string {
	return "robot:" + r.Kind + ":" + r.Grid + ":" + strconv.Itoa(i)
}

// robotTitle is the heading of a robot message, e.g. "【火警】alm-000001".
func robotTitle(severityZH, transition, id string) string {
	t := "【" + severityZH
	switch transition {
	case TransitionRaised:
	case TransitionCleared:
		t += "已恢复"
	case TransitionEscalated:
		t += "·升级"
	case TransitionIncident:
		t += "·群发事件"
	case TransitionDeliveryFault:
		t += "·推送被拒"
	default:
		t += "·" + stateZH[State(transition)]
	}
	return t + "】" + id
}

// pushFields are the lines under a robot message.
func pushFields(p *Push) [][2]string {
	return [][2]string{{"报警编号", p.AlarmID}, {"设备", p.Device.ID}, {"地点", p.Grid.Place}, {"微型消防站", p.Station.Name}}
}
