package main

import (
	"context"
	"database/sql"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// logWatch is a slog handler that remembers the messages logged.
type logWatch struct {
	mu   sync.Mutex
	msgs []string
}

func (w *logWatch) Enabled(context.Context, slog.Level) bool { return true }
func (w *logWatch) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	w.msgs = append(w.msgs, r.Message)
	w.mu.Unlock()
	return nil
}
func (w *logWatch) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *logWatch) WithGroup(string) slog.Handler      { return w }

func (w *logWatch) saw(part string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.msgs {
		if strings.Contains(m, part) {
			return true
		}
	}
	return false
}

// TestShutdownWithFailingStore (issue 20, defect 11): with the embedded
// broker, a message whose alarm the failing store cannot take holds the
// inline source in Sync; shutdown still ends after the 10 s drain grace,
// with the event logged LOST, instead of hanging.
func TestShutdownWithFailingStore(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the 10 s drain grace")
	}
	port := testenv.FreePort(t)
	cfg := defaults()
	cfg.Ledger = writeLedger(t, "http://127.0.0.1:1")
	cfg.MQTT.Listen = "127.0.0.1:" + strconv.Itoa(port)
	cfg.MQTT.Auth = "none"
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Influx.URL = "http://127.0.0.1:1" // not needed here
	cfg.Influx.ShutdownTimeout = 100 * time.Millisecond
	cfg.Alarms.DB = filepath.Join(t.TempDir(), "alarms.db")
	cfg.Alarms.Secret = "s"
	logs := &logWatch{}
	s, err := newService(&cfg, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	// The disk "fails": every new alarm is refused by the store.
	db, err := sql.Open("sqlite", cfg.Alarms.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TRIGGER broken BEFORE INSERT ON alarms BEGIN SELECT RAISE(ABORT, 'disk failing'); END`); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()

	select {
	case <-s.source.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the source did not start")
	}
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + cfg.MQTT.Listen).SetClientID("ch-1").
		SetConnectRetry(true).SetConnectRetryInterval(50 * time.Millisecond))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	c.Publish("fw/v1/up/ch-1/telemetry", 1, false,
		`{"ts":`+strconv.FormatInt(time.Now().UnixMilli(), 10)+`,"seq":1,"ch":3,"m":{"slot_temp_c":82.0}}`)
	defer func() {
		if t.Failed() {
			logs.mu.Lock()
			t.Logf("logs: %q", logs.msgs)
			logs.mu.Unlock()
		}
	}()
	testenv.WaitFor(t, 20*time.Second, "the alarm event failing to commit", func() bool {
		return logs.saw("alarm event failed to commit")
	})
	began := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(25 * time.Second):
		t.Fatal("shutdown still hanging 25 s after it began, with the store failing")
	}
	if d := time.Since(began); d < 5*time.Second {
		t.Errorf("shutdown took %s: the drain grace (10 s) was not given to the store", d)
	}
	if !logs.saw("alarm event LOST") {
		t.Error("the lost event was not logged")
	}
}
