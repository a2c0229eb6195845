package nbiot

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestDedupeKey(t *testing.T) {
	d := NewDedupe(4)
	at := time.UnixMilli(1764584400123)
	base := Report{Platform: PlatformCTWing, Type: TypeData, Device: DeviceKey{IMEI: "1"}, Time: at, Seq: -1, Payload: []byte{1, 2}}
	k0, ok := d.Key(&base)
	if !ok {
		t.Fatal("no key")
	}
	same := base
	same.Payload = []byte{1, 2}
	if k, _ := d.Key(&same); k != k0 {
		t.Error("equal reports, different keys")
	}
	for name, mut := range map[string]func(*Report){
		"payload":  func(r *Report) { r.Payload = []byte{1, 3} },
		"time":     func(r *Report) { r.Time = at.Add(time.Millisecond) },
		"device":   func(r *Report) { r.Device.IMEI = "2" },
		"seq":      func(r *Report) { r.Seq = 7 },
		"platform": func(r *Report) { r.Platform = PlatformOneNET },
		"presence": func(r *Report) { r.Presence = Online },
		"values":   func(r *Report) { r.Values = []Value{{Metric: 1, Value: 1}} },
	} {
		r := base
		mut(&r)
		if k, _ := d.Key(&r); k == k0 {
			t.Errorf("%s change kept the key", name)
		}
	}
	untimed := base
	untimed.Time = time.Time{}
	if _, ok := d.Key(&untimed); ok {
		t.Error("a report without time has a key")
	}
}

func TestDedupeEviction(t *testing.T) {
	d := NewDedupe(3)
	for k := uint64(1); k <= 5; k++ {
		d.Add(k)
		d.Add(k) // adding twice takes one slot
	}
	if d.Len() != 3 || d.Seen(1) || d.Seen(2) || !d.Seen(3) || !d.Seen(5) {
		t.Errorf("len %d seen1 %v seen5 %v", d.Len(), d.Seen(1), d.Seen(5))
	}
}

// A report whose Submit failed is not remembered: the platform's retry is
// submitted again; once submitted, the next retry is counted a duplicate.
func TestDeliverRemembersOnlySubmitted(t *testing.T) {
	fail := true
	var got [][]Report
	counts := map[string]int{}
	in := Intake{
		Dedupe: NewDedupe(8),
		Count:  func(p Platform, o string) { counts[o]++ },
		Submit: func(_ context.Context, rs []Report) error {
			if fail {
				return errors.New("store down")
			}
			got = append(got, rs)
			return nil
		},
	}
	r := Report{Platform: PlatformCTWing, Type: TypeData, Device: DeviceKey{IMEI: "1"}, Time: time.UnixMilli(1), JSON: []byte(`{"a":1}`)}
	if err := in.Deliver(context.Background(), PlatformCTWing, []Report{r}); err == nil {
		t.Fatal("failed submit returned nil")
	}
	fail = false
	for range 2 {
		if err := in.Deliver(context.Background(), PlatformCTWing, []Report{r}); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 1 || counts["submit"] != 1 || counts["accepted"] != 1 || counts["duplicate"] != 1 {
		t.Errorf("submitted %d, counts %v", len(got), counts)
	}
	// Without a time there is no dedupe: both are submitted.
	r.Time = time.Time{}
	for range 2 {
		if err := in.Deliver(context.Background(), PlatformCTWing, []Report{r}); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 3 {
		t.Errorf("untimed reports submitted %d times, want 2 more", len(got)-1)
	}
}

func TestPathToken(t *testing.T) {
	for _, c := range []struct {
		path, tok string
		ok        bool
	}{
		{"/nbiot/ctwing/abc123", "abc123", true},
		{"/nbiot/ctwing/abc123/", "abc123", true},
		{"/nbiot/ctwing/abc124", "abc123", false},
		{"/nbiot/ctwing/", "abc123", false},
		{"/nbiot/ctwing/", "", false},
		{"/abc123/x", "abc123", false},
	} {
		if PathToken(c.path, c.tok) != c.ok {
			t.Errorf("%q %q", c.path, c.tok)
		}
	}
}

// Concurrent deliveries of distinct and repeated reports are race-free and
// each distinct report is submitted at least once.
func TestDeliverConcurrent(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	in := Intake{Dedupe: NewDedupe(1024), Submit: func(_ context.Context, rs []Report) error {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range rs {
			seen[r.Device.IMEI]++
		}
		return nil
	}}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				r := Report{Platform: PlatformCTWing, Type: TypeData, Device: DeviceKey{IMEI: strconv.Itoa(i)}, Time: time.UnixMilli(int64(i + 1)), JSON: []byte(`{}`)}
				if err := in.Deliver(context.Background(), PlatformCTWing, []Report{r}); err != nil {
					t.Error(g, err)
				}
			}
		}()
	}
	wg.Wait()
	if len(seen) != 200 {
		t.Errorf("%d distinct reports submitted, want 200", len(seen))
	}
}

// A report like an earlier one but after a different one of the same device
// is taken: GB/T 45839 statuses alarm, normal, alarm within one second (its
// datetime has whole seconds) are three reports. Only a repeat of the
// device's last report is a retry.
func TestDeliverRepeatAfterChange(t *testing.T) {
	var got []string
	counts := map[string]int{}
	in := Intake{Dedupe: NewDedupe(8), Count: func(p Platform, o string) { counts[o]++ },
		Submit: func(_ context.Context, rs []Report) error {
			for _, r := range rs {
				got = append(got, string(r.JSON))
			}
			return nil
		}}
	at := time.Unix(1796118000, 0)
	alarm := Report{Platform: PlatformGB45839, Type: TypeStatus, Device: DeviceKey{Serial: "S1"}, Time: at, JSON: []byte(`alarm`)}
	normal := alarm
	normal.JSON = []byte(`normal`)
	other := alarm
	other.Device.Serial = "S2"
	for _, r := range []Report{alarm, alarm, normal, alarm, other, alarm} {
		if err := in.Deliver(context.Background(), PlatformGB45839, []Report{r}); err != nil {
			t.Fatal(err)
		}
	}
	// The second alarm is the retry of the first; the third follows a
	// normal; the last follows another device's report, so it is the retry
	// of this device's last one.
	if want := "alarm normal alarm alarm"; strings.Join(got, " ") != want || counts["duplicate"] != 2 {
		t.Errorf("submitted %q, duplicates %d; want %q and 2", strings.Join(got, " "), counts["duplicate"], want)
	}
}
