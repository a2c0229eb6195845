package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// The idle bench's packets, against bytes written from the MQTT 3.1.1
// specification (3.1 CONNECT, 3.3 PUBLISH, 2.2.3 remaining length).
func TestIdleFrames(t *testing.T) {
	// CONNECT, client id "ab", clean session, keepalive 600 s.
	want := []byte{0x10, 14, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x02, 0x58, 0x00, 0x02, 'a', 'b'}
	if got := mqttConnect("ab", 600); !bytes.Equal(got, want) {
		t.Errorf("CONNECT % x, want % x", got, want)
	}
	// PUBLISH QoS 1, topic "t/x", packet id 1, payload "hi".
	want = []byte{0x32, 9, 0x00, 0x03, 't', '/', 'x', 0x00, 0x01, 'h', 'i'}
	if got := mqttPublishQoS1("t/x", []byte("hi")); !bytes.Equal(got, want) {
		t.Errorf("PUBLISH % x, want % x", got, want)
	}
	// Remaining length 200 takes two bytes: 0xC8 0x01.
	if got := mqttPacket(0x30, make([]byte, 200)); got[1] != 0xC8 || got[2] != 0x01 || len(got) != 203 {
		t.Errorf("remaining length 200: % x", got[:3])
	}
}

// An idle client connects to a real broker, publishes its reading, gets
// its PUBACK and stays connected.
func TestIdleClient(t *testing.T) {
	m := testenv.StartMosquitto(t)
	c, err := idleClient(strings.TrimPrefix(m.URL, "tcp://"), "dev-1", "fw/v1/up/dev-1/telemetry", []byte(`{"m":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
