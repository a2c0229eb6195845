package registry

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

// The responsible person (contact, 责任人) of an ordinary device is kept
// by the store — as a fifth part of the info column — and comes back from
// it; a row written before the contact existed (four parts) reads as no
// contact; a 0x1F in the name is refused by field (issue 18).
func TestStoreContact(t *testing.T) {
	stores(t, func(t *testing.T, location string) {
		ctx := context.Background()
		s, _ := started(t, location, ledgerFile(t, t.TempDir(), nil))
		c := &devices.Change{UpsertDevices: []devices.DeviceEntry{
			{ID: "el-9", Kind: "electrical", Grid: "450204002003", Unit: "柳南纺织厂", Phone: "13800000000", Contact: "张三"},
			{ID: "el-10", Kind: "electrical", Grid: "450204002003", Contact: "李四"}, // the contact alone
		}}
		l, _, err := s.Commit(ctx, "root", c, CommitOptions{Source: "api"})
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := l.LookupID("el-9"); d.Contact != "张三" {
			t.Errorf("live el-9 contact %q", d.Contact)
		}
		got, err := s.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][3]string{"el-9": {"柳南纺织厂", "13800000000", "张三"}, "el-10": {"", "", "李四"}}
		for _, d := range got.Devices {
			if w, ok := want[d.ID]; ok {
				if g := [3]string{d.Unit, d.Phone, d.Contact}; g != w {
					t.Errorf("%s loaded as unit/phone/contact %q, want %q", d.ID, g, w)
				}
				delete(want, d.ID)
			} else if d.Contact != "" {
				t.Errorf("%s loaded with contact %q", d.ID, d.Contact)
			}
		}
		if len(want) != 0 {
			t.Errorf("not loaded: %v", want)
		}
		// The restart path (each device built as its row is read) keeps it too.
		rl, err := s.LoadLedger(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := rl.LookupID("el-9"); !ok || d.Contact != "张三" || d.Phone != "13800000000" {
			t.Errorf("LoadLedger el-9: %+v", d)
		}

		// A row as the store wrote it before contacts: four parts.
		if _, err := s.db.ExecContext(ctx, s.q(`UPDATE registry_devices SET info = ? WHERE id = ?`),
			"ARCM300\x1f鹅山路12号\x1f柳南纺织厂\x1f13800000000", "el-9"); err != nil {
			t.Fatal(err)
		}
		e, _, ok, err := s.DeviceEntry(ctx, "el-9")
		if err != nil || !ok || e.Contact != "" || e.Phone != "13800000000" || e.Unit != "柳南纺织厂" || e.Model != "ARCM300" {
			t.Errorf("old row read as %+v (%v)", e, err)
		}

		_, _, err = s.Commit(ctx, "root", &devices.Change{UpsertDevices: []devices.DeviceEntry{
			{ID: "el-11", Kind: "electrical", Grid: "450204002003", Contact: "王\x1f五"}}}, CommitOptions{Source: "api"})
		var le *devices.LoadError
		if !errors.As(err, &le) || len(le.Problems) != 1 || le.Problems[0].Field != "contact" {
			t.Errorf("contact with 0x1F: %v", err)
		}
	})
}

func TestAPIDeviceContact(t *testing.T) {
	_, srv := testAPI(t)
	a := call(t, srv, "POST", "/api/v1/registry/devices", "admin-token",
		`{"id":"el-9","kind":"electrical","grid":"450204002003","unit":"柳南纺织厂","phone":"13800000000","contact":"张三"}`)
	if a.status != http.StatusCreated || a.body["contact"] != "张三" {
		t.Fatalf("POST: %d %s", a.status, a.raw)
	}
	g := call(t, srv, "GET", "/api/v1/registry/devices/el-9", "viewer-token", "")
	if g.status != 200 || g.body["contact"] != "张三" {
		t.Fatalf("GET: %d %s", g.status, g.raw)
	}
	p := call(t, srv, "PUT", "/api/v1/registry/devices/el-9", "admin-token",
		`{"kind":"electrical","grid":"450204002003","contact":"李四"}`, "If-Match", g.etag)
	if p.status != 200 || p.body["contact"] != "李四" {
		t.Fatalf("PUT: %d %s", p.status, p.raw)
	}
	h := call(t, srv, "GET", "/api/v1/registry/audit?entity=device&id=el-9", "viewer-token", "")
	if !strings.Contains(h.raw, "李四") {
		t.Errorf("the audit does not show the new contact: %s", h.raw)
	}
}
