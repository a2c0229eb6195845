package main

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/crypto/argon2"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// writeSecretLedger runs firesim ledger -secrets for n devices.
func writeSecretLedger(t *testing.T, n int) (*devices.Ledger, map[string]string, string) {
	t.Helper()
	dir := t.TempDir()
	ledger, secretsFile := filepath.Join(dir, "ledger.yaml"), filepath.Join(dir, "secrets.txt")
	var out bytes.Buffer
	if code := firesim(context.Background(), []string{"ledger", "-devices", fmt.Sprint(n), "-o", ledger, "-secrets", secretsFile}, &out, &out); code != 0 {
		t.Fatalf("firesim ledger -secrets: exit %d\n%s", code, out.String())
	}
	l, err := devices.LoadLedger(ledger)
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := readSecrets(secretsFile)
	if err != nil {
		t.Fatal(err)
	}
	return l, secrets, secretsFile
}

// TestLedgerSecrets: firesim ledger -secrets gives every device a secret of
// its own, the ledger its argon2id hash in the form firewatch hash-secret
// writes ($argon2id$v=19$m=…,t=…,p=…$salt$key, base64 without padding),
// checked here by recomputing argon2id, and writes the secrets readable by
// the owner only.
func TestLedgerSecrets(t *testing.T) {
	l, secrets, file := writeSecretLedger(t, 8)
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secrets file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	seen := map[string]bool{}
	for i := range l.Devices {
		d := &l.Devices[i]
		secret, ok := secrets[d.ID]
		if !ok {
			t.Fatalf("no secret for %s", d.ID)
		}
		if seen[secret] {
			t.Errorf("%s: secret shared with another device", d.ID)
		}
		seen[secret] = true
		var m, tm uint32
		var p uint8
		f := strings.Split(d.SecretHash, "$")
		if len(f) != 6 || f[1] != "argon2id" || f[2] != "v=19" {
			t.Fatalf("%s: secret_hash %q is not $argon2id$v=19$…", d.ID, d.SecretHash)
		}
		if _, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &m, &tm, &p); err != nil {
			t.Fatalf("%s: parameters %q: %v", d.ID, f[3], err)
		}
		salt, err1 := base64.RawStdEncoding.DecodeString(f[4])
		key, err2 := base64.RawStdEncoding.DecodeString(f[5])
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: salt or key not base64: %v %v", d.ID, err1, err2)
		}
		if got := argon2.IDKey([]byte(secret), salt, tm, m, p, uint32(len(key))); subtle.ConstantTimeCompare(got, key) != 1 {
			t.Errorf("%s: the secret does not open its secret_hash", d.ID)
		}
	}
}

// TestDeviceFleetCommands runs the per-device fleet (firesim run -secrets)
// against a real Mosquitto: each device publishes on its own connection,
// and answers linkage commands written by hand after docs/mqtt.md
// "Downlink": performed and acknowledged, a repeated id answered with dup,
// an expired one and one without exp refused.
func TestDeviceFleetCommands(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	l, secrets, _ := writeSecretLedger(t, 4)
	var log bytes.Buffer
	var logMu sync.Mutex
	logged := func() string { logMu.Lock(); defer logMu.Unlock(); return log.String() }
	fleet, err := connectDevices(mq.URL, l, secrets, 30*time.Second, &syncWriter{mu: &logMu, w: &log})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Disconnect(100)
	for id, c := range fleet.clients {
		if !c.IsConnectionOpen() {
			t.Fatalf("device %s not connected", id)
		}
	}

	ctl := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mq.URL).SetClientID("test-centre"))
	if tok := ctl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer ctl.Disconnect(100)
	got := make(chan mqtt.Message, 16)
	if tok := ctl.Subscribe("fw/v1/up/#", 1, func(_ mqtt.Client, m mqtt.Message) { got <- m }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	next := func(what string) mqtt.Message {
		t.Helper()
		select {
		case m := <-got:
			return m
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: nothing within 10 s\n%s", what, logged())
			return nil
		}
	}

	dev := l.Devices[0].ID
	if tok := fleet.Publish("fw/v1/up/"+dev+"/event", []byte(`{"seq":1,"event":"smoke_alarm"}`)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	if m := next("the device's event"); m.Topic() != "fw/v1/up/"+dev+"/event" {
		t.Errorf("got %s", m.Topic())
	}
	if tok := fleet.Publish("fw/v1/up/nobody/event", []byte(`{}`)); tok.Error() == nil {
		t.Error("a publish for a device without a connection did not fail")
	}

	now := time.Now().UnixMilli()
	for _, c := range []struct {
		cmd  string
		want string // the answer's fields that matter, as JSON keys and values
	}{
		{fmt.Sprintf(`{"cmd":"cut_power","id":"alm-000042-cut_power","ch":3,"ts":%d,"exp":%d}`, now, now+60000),
			`"id":"alm-000042-cut_power","ok":true|"state":"off"`},
		{fmt.Sprintf(`{"cmd":"cut_power","id":"alm-000042-cut_power","ch":3,"ts":%d,"exp":%d}`, now, now+60000),
			`"id":"alm-000042-cut_power","ok":true|"state":"off"|"dup":true`},
		{fmt.Sprintf(`{"cmd":"restore_power","id":"alm-000042-restore","ts":%d,"exp":%d}`, now, now+60000),
			`"ok":true|"state":"on"`},
		{fmt.Sprintf(`{"cmd":"cut_power","id":"alm-000043-cut_power","ts":%d,"exp":%d}`, now-120000, now-60000),
			`"ok":false|"error":"expired"`},
		{fmt.Sprintf(`{"cmd":"cut_power","id":"alm-000044-cut_power","ts":%d}`, now),
			`"ok":false|"error":"missing ts/exp"`},
	} {
		if tok := ctl.Publish("fw/v1/down/"+dev+"/command", 1, false, c.cmd); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish command: %v", tok.Error())
		}
		m := next("the answer to " + c.cmd)
		if m.Topic() != "fw/v1/up/"+dev+"/ack" {
			t.Fatalf("answer on %s, want fw/v1/up/%s/ack", m.Topic(), dev)
		}
		var ack map[string]any
		if err := json.Unmarshal(m.Payload(), &ack); err != nil {
			t.Fatalf("answer %s: %v", m.Payload(), err)
		}
		if _, ok := ack["ts"]; !ok {
			t.Errorf("answer %s has no ts", m.Payload())
		}
		for _, w := range strings.Split(c.want, "|") {
			if !strings.Contains(string(m.Payload()), w) {
				t.Errorf("command %s: answer %s lacks %s", c.cmd, m.Payload(), w)
			}
		}
	}
}
