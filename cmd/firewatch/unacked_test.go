package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestUnackedWhenAlarmNotStored (issue 15 review): with the embedded broker,
// a smoke alarm published at QoS 1 while the alarm store fails, and
// firewatch stopping, is logged LOST after the drain grace, and the broker
// must then NOT acknowledge it (no PUBACK): the device keeps it and sends it
// again. After a restart with a working store, the resent PUBLISH (DUP) is
// acknowledged and raises the alarm. The MQTT packets are written by hand
// (MQTT 3.1.1 §3.1, §3.3, §3.4).
func TestUnackedWhenAlarmNotStored(t *testing.T) {
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
	defer func() {
		if t.Failed() {
			logs.mu.Lock()
			t.Logf("logs: %q", logs.msgs)
			logs.mu.Unlock()
		}
	}()
	start := func() (stop func() error) {
		s, err := newService(&cfg, slog.New(logs))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.run(ctx) }()
		select {
		case <-s.source.Ready():
		case err := <-done:
			t.Fatalf("firewatch stopped: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("the source did not start")
		}
		return func() error {
			cancel()
			select {
			case err := <-done:
				return err
			case <-time.After(25 * time.Second):
				t.Fatal("shutdown still hanging 25 s after it began")
				return nil
			}
		}
	}

	stop := start()
	db, err := sql.Open("sqlite", cfg.Alarms.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The disk "fails": every new alarm is refused by the store.
	if _, err := db.Exec(`CREATE TRIGGER broken BEFORE INSERT ON alarms BEGIN SELECT RAISE(ABORT, 'disk failing'); END`); err != nil {
		t.Fatal(err)
	}
	c := rawConnect(t, cfg.MQTT.Listen, "sm-1")
	payload := `{"ts":` + strconv.FormatInt(time.Now().UnixMilli(), 10) + `,"seq":1,"event":"smoke_alarm"}`
	rawPublishQoS1(t, c, "fw/v1/up/sm-1/event", 7, payload, false)
	testenv.WaitFor(t, 20*time.Second, "the alarm event failing to commit", func() bool {
		return logs.saw("alarm event failed to commit")
	})
	stop()
	if !logs.saw("alarm event LOST") {
		t.Error("the lost event was not logged")
	}
	if !logs.saw("NOT acknowledged") {
		t.Error("the unacknowledged message was not logged")
	}
	// Everything the broker sent until it closed the connection: no PUBACK.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Error("the broker did not close the connection at shutdown")
	}
	c.Close()
	if bytes.Contains(got, []byte{0x40, 0x02, 0x00, 7}) {
		t.Fatalf("PUBACK sent for a smoke alarm that was not stored (received % x): the device will not send it again", got)
	}

	// The store works again; the device reconnects and sends the message
	// again (DUP), which is now stored and acknowledged.
	if _, err := db.Exec(`DROP TRIGGER broken`); err != nil {
		t.Fatal(err)
	}
	stop = start()
	c = rawConnect(t, cfg.MQTT.Listen, "sm-1")
	defer c.Close()
	rawPublishQoS1(t, c, "fw/v1/up/sm-1/event", 7, payload, true)
	var ack [4]byte
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.ReadFull(c, ack[:]); err != nil || ack != [4]byte{0x40, 0x02, 0x00, 7} {
		t.Fatalf("PUBACK of the resent alarm: % x, %v", ack, err)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM alarms WHERE device_id = 'sm-1'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d alarms of sm-1 stored after the resend (%v), want 1", n, err)
	}
	if err := stop(); err != nil {
		t.Errorf("second run: %v", err)
	}
}

// rawConnect opens an MQTT 3.1.1 session: CONNECT ("MQTT", level 4, clean
// session, keep-alive 60 s, client id), then reads CONNACK (accepted).
func rawConnect(t *testing.T, addr, id string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, byte(len(id) >> 8), byte(len(id))}
	body = append(body, id...)
	if _, err := c.Write(append(append([]byte{0x10}, remLen(len(body))...), body...)); err != nil {
		t.Fatal(err)
	}
	var ack [4]byte
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, ack[:]); err != nil || ack != [4]byte{0x20, 0x02, 0x00, 0x00} {
		t.Fatalf("CONNACK % x: %v", ack, err)
	}
	c.SetReadDeadline(time.Time{})
	return c
}

// rawPublishQoS1 sends PUBLISH QoS 1 (0x32; 0x3a with DUP) with packet id.
func rawPublishQoS1(t *testing.T, c net.Conn, topic string, id uint16, payload string, dup bool) {
	t.Helper()
	body := binary.BigEndian.AppendUint16(nil, uint16(len(topic)))
	body = append(body, topic...)
	body = binary.BigEndian.AppendUint16(body, id)
	body = append(body, payload...)
	hdr := byte(0x32)
	if dup {
		hdr |= 0x08
	}
	if _, err := c.Write(append(append([]byte{hdr}, remLen(len(body))...), body...)); err != nil {
		t.Fatal(err)
	}
}
