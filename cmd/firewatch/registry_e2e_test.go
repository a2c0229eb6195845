package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// registryCall sends one request to firewatch's registry API with token.
func registryCall(t *testing.T, s *service, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, s.httpURL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

// A device added through the registry API while firewatch runs connects
// with the secret the API generated, publishes a smoke alarm, and the
// station's dispatch endpoint gets the push; the audit names the admin.
// (It needs issue 18's live adoption by the broker and the pipeline.)
func TestRegistryDeviceAddedLive(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	rcv := newReceiver(t)
	cfg := defaults()
	cfg.Ledger = writeLedger(t, rcv.URL)
	cfg.MQTT.Listen = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.Tokens = "wang-wu:admin:admin-secret-0123456789,grafana:viewer:viewer-secret-012345678"
	cfg.Influx.URL, cfg.Influx.Bucket = db.URL, db.Bucket
	cfg.Influx.FlushInterval = 100 * time.Millisecond
	cfg.Alarms.DB = filepath.Join(t.TempDir(), "alarms.db")
	cfg.Alarms.Secret = e2eSecret
	cfg.Alarms.RetryMin = 50 * time.Millisecond
	s, _ := runService(t, &cfg, slog.LevelWarn)

	const dev = `{"id":"sm-new","kind":"smoke","grid":"450204002003","address":"鹅山路30号","unit":"鹅山村委会","phone":"13900000000","contact":"覃秀兰","generate_secret":true}`
	if code, _ := registryCall(t, s, "POST", "/api/v1/registry/devices", "viewer-secret-012345678", dev); code != http.StatusForbidden {
		t.Fatalf("viewer POST: %d, want 403", code)
	}
	code, got := registryCall(t, s, "POST", "/api/v1/registry/devices", "admin-secret-0123456789", dev)
	secret, _ := got["secret"].(string)
	if code != http.StatusCreated || secret == "" {
		t.Fatalf("admin POST: %d %v", code, got)
	}
	if code, got := registryCall(t, s, "GET", "/api/v1/registry/devices/sm-new", "viewer-secret-012345678", ""); code != 200 || got["secret"] != nil {
		t.Fatalf("viewer GET: %d %v", code, got)
	}

	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + cfg.MQTT.Listen).SetClientID("sm-new").
		SetUsername("sm-new").SetPassword(secret).SetConnectRetry(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("the new device cannot connect with its generated secret: %v", tok.Error())
	}
	defer c.Disconnect(100)
	msg := fmt.Sprintf(`{"ts":%d,"seq":1,"event":"smoke_alarm"}`, time.Now().UnixMilli())
	if tok := c.Publish("fw/v1/up/sm-new/event", 1, false, msg); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	deadline := time.After(15 * time.Second)
	for {
		select {
		case <-rcv.got:
		case <-deadline:
			t.Fatalf("no push for sm-new: got %v", rcv.all())
		}
		for _, p := range rcv.all() {
			if strings.Contains(fmt.Sprint(p.body), "sm-new") && p.sig == nil {
				// The responsible person entered through the API is in the dispatcher text (issue 18).
				if !strings.Contains(fmt.Sprint(p.body), "责任单位：鹅山村委会。责任人：覃秀兰 13900000000。") {
					t.Errorf("the push text lacks the contact: %v", p.body)
				}
				goto pushed
			}
		}
	}
pushed:
	code, audit := registryCall(t, s, "GET", "/api/v1/registry/audit?entity=device&id=sm-new", "viewer-secret-012345678", "")
	items, _ := audit["items"].([]any)
	if code != 200 || len(items) != 1 || items[0].(map[string]any)["actor"] != "wang-wu" {
		t.Fatalf("audit: %d %v", code, audit)
	}
}
