package testenv

import (
	"strconv"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

func TestFreePortUnique(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p := FreePort(t)
		if p <= 0 || seen[p] {
			t.Fatalf("FreePort returned %d twice or invalid", p)
		}
		seen[p] = true
	}
}

func TestParseFluxCSV(t *testing.T) {
	// As InfluxDB 1.8 prints it: annotations and header per table, CRLF,
	// a newline inside a quoted string value.
	in := "#datatype,string,long,dateTime:RFC3339,double,string,string\r\n" +
		"#group,false,false,false,false,true,true\r\n" +
		"#default,_result,,,,,\r\n" +
		",result,table,_time,_value,_field,device\r\n" +
		",,0,2023-11-14T22:13:20Z,0.1,v,a b\r\n" +
		",,0,2023-11-14T22:13:21Z,350,v,a b\r\n" +
		"\r\n" +
		"#datatype,string,long,dateTime:RFC3339,string,string\r\n" +
		"#group,false,false,false,false,true\r\n" +
		"#default,_result,,,,\r\n" +
		",result,table,_time,_value,_field\r\n" +
		",,1,2023-11-14T22:13:20Z,\"line1\r\nline2, \"\"quoted\"\"\",msg\r\n\r\n"
	rows, err := parseFluxCSV(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("got %d rows, want 3: %v", len(rows), rows)
	}
	if rows[1]["_value"] != "350" || rows[1]["device"] != "a b" || rows[1]["table"] != "0" {
		t.Errorf("row 1 = %v", rows[1])
	}
	if got := rows[2]["_value"]; got != "line1\nline2, \"quoted\"" {
		t.Errorf("string value = %q", got)
	}
	if _, ok := rows[2]["device"]; ok {
		t.Errorf("row of table 1 has the column of table 0: %v", rows[2])
	}

	errTable := "#datatype,string,string\r\n#group,true,true\r\n#default,,\r\n,error,reference\r\n,boom,\r\n"
	if _, err := parseFluxCSV(strings.NewReader(errTable)); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("error table: err = %v, want boom", err)
	}
}

func TestInfluxDBRoundTrip(t *testing.T) {
	i := StartInfluxDB(t)
	if i.Bucket != "firewatch/autogen" || i.Database != "firewatch" {
		t.Fatalf("bucket %q database %q", i.Bucket, i.Database)
	}
	// One point in the future: Count must not stop at now().
	future := time.Now().Add(48 * time.Hour).UnixMilli()
	i.Write(t, "probe,device=a\\ b,kind=smoke v=0.1,w=350 1700000000000\n"+
		"probe,device=c v=-12.5 "+itoa(future)+"\n")
	rows := i.Flux(t, `from(bucket: "firewatch/autogen")
  |> range(start: 2023-01-01T00:00:00Z, stop: 2100-01-01T00:00:00Z)
  |> filter(fn: (r) => r._measurement == "probe" and r.device == "a b" and r._field == "v")`)
	if len(rows) != 1 || rows[0]["_value"] != "0.1" || rows[0]["kind"] != "smoke" || rows[0]["_time"] != "2023-11-14T22:13:20Z" {
		t.Fatalf("rows = %v", rows)
	}
	if n := i.Count(t, "probe"); n != 3 {
		t.Errorf("Count = %d, want 3 field values", n)
	}
	if n := i.Count(t, "absent"); n != 0 {
		t.Errorf("Count of an absent measurement = %d", n)
	}

	// Data and port survive a restart.
	i.Stop()
	i.Stop() // no-op
	i.Start()
	if n := i.Count(t, "probe"); n != 3 {
		t.Errorf("after restart Count = %d, want 3", n)
	}
}

// TestMosquittoPersistentSession checks the property broker-restart tests
// rely on: QoS 1 messages queued for an offline persistent session survive
// Stop and Start.
func TestMosquittoPersistentSession(t *testing.T) {
	m := StartMosquitto(t)
	if m.URL != "tcp://127.0.0.1:"+itoa(int64(m.Port)) {
		t.Fatalf("URL %q port %d", m.URL, m.Port)
	}
	got := make(chan string, 10)
	sub := connect(t, m.URL, "testenv-sub", func(_ mqtt.Client, msg mqtt.Message) { got <- string(msg.Payload()) })
	wait(t, sub.Subscribe("fw/test/#", 1, nil))
	sub.Disconnect(100)

	pub := connect(t, m.URL, "testenv-pub", nil)
	wait(t, pub.Publish("fw/test/a", 1, false, "queued while offline"))
	pub.Disconnect(100)

	m.Stop()
	m.Start()

	sub = connect(t, m.URL, "testenv-sub", func(_ mqtt.Client, msg mqtt.Message) { got <- string(msg.Payload()) })
	defer sub.Disconnect(100)
	select {
	case p := <-got:
		if p != "queued while offline" {
			t.Fatalf("payload %q", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the queued message did not survive the broker restart")
	}
}

func connect(t *testing.T, url, id string, h mqtt.MessageHandler) mqtt.Client {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(false).
		SetAutoReconnect(false).SetConnectRetry(false).SetDefaultPublishHandler(h)
	c := mqtt.NewClient(o)
	wait(t, c.Connect())
	return c
}

func wait(t *testing.T, tok mqtt.Token) {
	t.Helper()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("MQTT operation timed out")
	}
	if err := tok.Error(); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
