package devices

import (
	"strings"
	"testing"
	"unsafe"
)

// The responsible person (责任人, contact:) of an ordinary device survives
// the YAML ledger, Entries and Build; editing it is an edit that keeps
// the device's rule state (issue 18).
func TestContactRoundTrip(t *testing.T) {
	text := strings.Replace(registryLedger, `unit: 纺织厂, phone: "13800000000",`, `unit: 纺织厂, phone: "13800000000", contact: 张三,`, 1)
	l := mustLedger(t, text)
	d, ok := l.LookupID("el-1")
	if !ok || d.Contact != "张三" {
		t.Fatalf("el-1 contact %q, want 张三", d.Contact)
	}
	y, err := MarshalEntries(l.Entries())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(y), "contact: 张三") {
		t.Errorf("marshalled ledger lacks contact:\n%s", y)
	}
	e, err := ParseEntries("out.yaml", y)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := Build("registry", e)
	if err != nil {
		t.Fatal(err)
	}
	if d2, _ := l2.LookupID("el-1"); d2.Contact != "张三" || !deviceEqual(d, d2) {
		t.Errorf("after the round trip el-1 is %+v", *d2)
	}
	// Devices that name the same person share one copy of the name.
	two := strings.Replace(text, `id: el-2`, "id: el-2\n    contact: 张三", 1)
	l3 := mustLedger(t, two)
	a, _ := l3.LookupID("el-1")
	b, _ := l3.LookupID("el-2")
	if b.Contact != "张三" || unsafe.StringData(a.Contact) != unsafe.StringData(b.Contact) {
		t.Errorf("contacts %q and %q are not one interned string", a.Contact, b.Contact)
	}

	e1 := l.Entries().Devices[0]
	e1.Contact = "李四"
	n, diff, err := l.Apply(&Change{UpsertDevices: []DeviceEntry{e1}})
	if err != nil {
		t.Fatal(err)
	}
	if len(diff.Edited) != 1 || len(diff.Reset) != 0 {
		t.Errorf("contact edit: diff %+v, want one edit without reset", diff)
	}
	if d, _ := n.LookupID("el-1"); d.Contact != "李四" {
		t.Errorf("after the edit el-1 contact %q", d.Contact)
	}
}
