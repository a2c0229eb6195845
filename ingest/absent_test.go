package ingest

import "testing"

// TestDecodeAbsent: a metric sent as null (a gateway's sentinel: sensor
// not connected) is absent for that metric only; the element's other
// metrics are accepted (finding 5 of issue 24: one sentinel rejected the
// whole channel and blinded the over-rating rules).
func TestDecodeAbsent(t *testing.T) {
	d := NewDecoder(testLedger(t))
	msgs, rejects := d.Decode("fw/v1/up/gw/gw-1/batch", []byte(`{"readings":[
		{"dev":"el-1","ts":5,"seq":1,"ch":2,"m":{"cable_temp_c":null,"phase_current_a":71.5,"voltage_v":221}},
		{"dev":"hy-1","ts":5,"seq":2,"m":{"pressure_mpa":null}},
		{"dev":"el-1","ts":5,"seq":3,"ch":4,"m":{"voltage_v":null}}]}`), now)
	if len(msgs) != 2 || len(rejects) != 1 {
		t.Fatalf("%d messages, rejects %v; want 2 and the ch 4 voltage (3 phases) rejected", len(msgs), rejects)
	}
	m := &msgs[0]
	metrics, values := d.Values(m)
	if len(metrics) != 2 || metrics[0].String() != "phase_current_a" || values[0] != 71.5 {
		t.Errorf("values %v %v", metrics, values)
	}
	if a := d.Absent(m); len(a) != 1 || a[0].String() != "cable_temp_c" {
		t.Errorf("absent %v", a)
	}
	if metrics, _ := d.Values(&msgs[1]); len(metrics) != 0 || len(d.Absent(&msgs[1])) != 1 {
		t.Errorf("hy-1: values %v absent %v", metrics, d.Absent(&msgs[1]))
	}
	// A direct device's message too.
	msgs, rejects = d.Decode("fw/v1/up/el-1/telemetry", []byte(`{"m":{"residual_current_ma":null,"voltage_v":220}}`), now)
	if len(msgs) != 1 || len(rejects) != 0 || len(d.Absent(&msgs[0])) != 1 {
		t.Fatalf("telemetry with null: %v %v", msgs, rejects)
	}
}
