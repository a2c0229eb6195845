package alarms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"text/template"
	"time"

	"github.com/firewatch-iot/firewatch/rules"
)

// SMS and voice notification of a detector's responsible person (责任人),
// GB/T 45839 5.10.4: the people responsible are told of a fire alarm within
// 15 s through at least two kinds of channel. firewatch posts each message
// to one SMS/voice gateway webhook (SMSGateway), as a push of the outbox:
// stored with the alarm in the same transaction, retried until the gateway
// answers 2xx, signed like every push (recipient RecipientSMS, key
// `firewatch push-key sms`), shown with the alarm's pushes (targets "sms" and
// "voice"), and queued behind the gateway's own worker, so a failing gateway
// holds up no other channel. The gateway (a provider's API behind a small
// adapter, or a provider that takes a JSON webhook) sends the SMS and places
// the call; the body is the operator's template.

// RecipientSMS is the recipient of pushes to the SMS/voice gateway.
const RecipientSMS = "sms"

// Outbox targets of the gateway's messages.
const (
	TargetSMS   = "sms"
	TargetVoice = "voice"
)

// DefaultSMSTemplate is the body of a gateway message unless configured:
// JSON with the number, the person, the channel ("sms" or "voice") and the
// alarm's text.
const DefaultSMSTemplate = `{"to":{{json .Mobile}},"name":{{json .Name}},"channel":{{json .Channel}},"text":{{json .Text}},` +
	`"alarm_id":{{json .AlarmID}},"severity":{{json .Severity}},"device":{{json .Device}},"address":{{json .Address}}}`

// SMSMessage is what a gateway template sees.
type SMSMessage struct {
	Mobile, Name string // from the device's ledger entry (nbiot.mobile, nbiot.responsible)
	Channel      string // "sms" or "voice"
	Text         string // the alarm's message (zh-CN)
	AlarmID      string
	Severity     string // fire, alarm, fault, offline, ...
	SeverityZH   string
	Device       string
	Address      string
}

// SMSGateway is the SMS/voice gateway of Config.SMS.
type SMSGateway struct {
	URL      string
	template *template.Template
}

// NewSMSGateway checks the gateway's URL and body template (Go text/template
// over SMSMessage, with json to quote a value; empty: DefaultSMSTemplate).
func NewSMSGateway(rawURL, tmpl string) (*SMSGateway, error) {
	if u, err := url.Parse(rawURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("sms gateway: not an http(s) URL")
	}
	if tmpl == "" {
		tmpl = DefaultSMSTemplate
	}
	t, err := template.New("sms").Option("missingkey=error").Funcs(template.FuncMap{
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
	}).Parse(tmpl)
	if err != nil {
		return nil, fmt.Errorf("sms template: %w", err)
	}
	g := &SMSGateway{URL: rawURL, template: t}
	if _, err := g.body(SMSMessage{Mobile: "13800000000", Name: "张三", Channel: TargetSMS, Text: "【火警】\"测试\"\n"}); err != nil {
		return nil, err
	}
	return g, nil
}

// body renders one message; a template that does not make JSON is refused.
func (g *SMSGateway) body(msg SMSMessage) ([]byte, error) {
	var b bytes.Buffer
	if err := g.template.Execute(&b, msg); err != nil {
		return nil, fmt.Errorf("sms template: %w", err)
	}
	if !json.Valid(b.Bytes()) {
		return nil, fmt.Errorf("sms template: the body is not JSON: %.100s", b.Bytes())
	}
	return b.Bytes(), nil
}

// smsChannels are the gateway channels of a severity: a fire gets a call
// as well as an SMS (GB/T 45839 5.10.4: two kinds of channel besides the
// push), alarms, faults and offline an SMS, warnings nothing.
func smsChannels(severity string) []string {
	switch severity {
	case rules.SeverityFire.String():
		return []string{TargetSMS, TargetVoice}
	case rules.SeverityAlarm.String(), rules.SeverityFault.String(), rules.SeverityOffline.String():
		return []string{TargetSMS}
	}
	return nil
}

// enqueueSMS queues, in tx, the gateway messages of a raised alarm to the
// person responsible for its device, when the ledger names a mobile. It
// returns the gateway's endpoint once per message, for the outbox to wake.
func (m *Manager) enqueueSMS(ctx context.Context, tx *storeTx, alarmID int64, in pushInput, now time.Time) ([]string, error) {
	g, d := m.cfg.SMS, in.device
	if g == nil || d.NBIoT == nil || d.NBIoT.Mobile == "" {
		return nil, nil
	}
	p := buildPush(in)
	var eps []string
	for _, ch := range smsChannels(p.Severity) {
		body, err := g.body(SMSMessage{Mobile: d.NBIoT.Mobile, Name: d.NBIoT.Responsible, Channel: ch, Text: p.Message,
			AlarmID: p.AlarmID, Severity: p.Severity, SeverityZH: p.SeverityZH, Device: d.ID, Address: d.Address})
		if err != nil {
			return nil, err
		}
		// A key of its own per channel: a gateway that dedupes on the
		// Idempotency-Key alone must not take the call for a repeat of
		// the SMS.
		key := p.IdempotencyKey + "-" + ch
		if err := tx.insertPush(ctx, newPush{alarmID: alarmID, transition: in.transition, target: ch,
			endpoint: g.URL, key: key, body: body}, now); err != nil {
			return nil, fmt.Errorf("queue %s message %s: %w", ch, key, err)
		}
		eps = append(eps, g.URL)
	}
	return eps, nil
}
