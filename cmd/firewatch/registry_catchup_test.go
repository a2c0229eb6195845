package main

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/cluster"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// Issue 15 in cluster mode, the window between two polls of the registry
// store: instance B owns the only partition and polls the store once an
// hour, so that only the catch-up can help. A smoke detector added through
// A's API is admitted by A's auth callout and publishes its smoke alarm at
// once; B, whose registry does not have it, catches the registry up before
// it takes the message (cluster/catchup.go) and the alarm reaches the
// station. Before, B rejected the message as unknown_device, acknowledged
// it to the stream and dropped it: the alarm was missed.
func TestClusterRegistryCatchUp(t *testing.T) {
	rc := newRegistryCluster(t)
	instance := func(name string) *service {
		return rc.instance(name, func(cfg *Config) {
			cfg.Registry.FollowInterval = time.Hour // only the catch-up brings A's commit to B
			cfg.Registry.FollowNotify = false       // (nor does a commit notification)
		})
	}
	// B first: it pulls the partition first and keeps it (its share of one
	// partition between two instances is one).
	b := instance("b")
	srcB := b.source.(*cluster.Source)
	// An instance holds a partition once a message of it arrives: a
	// detector added through B (alone, it answers the callout) reports.
	const warm = `{"id":"sm-warm","kind":"smoke","grid":"450204002003","address":"鹅山路32号","unit":"鹅山村委会","generate_secret":true}`
	code, got := registryCall(t, b, "POST", "/api/v1/registry/devices", "admin-secret-0123456789", warm)
	warmSecret, _ := got["secret"].(string)
	if code != http.StatusCreated || warmSecret == "" {
		t.Fatalf("POST on B: %d %v", code, got)
	}
	w := rc.admitted("sm-warm", warmSecret, 30*time.Second)
	status := fmt.Sprintf(`{"ts":%d,"seq":1}`, time.Now().UnixMilli())
	if tok := w.Publish("fw/v1/up/sm-warm/status", 1, false, status); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish sm-warm: %v", tok.Error())
	}
	testenv.WaitFor(t, 30*time.Second, "B to own the partition", func() bool { return len(srcB.Owned()) == 1 })
	catchUps := srcB.RegistryCatchUps()
	a := instance("a")

	const dev = `{"id":"sm-new","kind":"smoke","grid":"450204002003","address":"鹅山路30号","unit":"鹅山村委会","generate_secret":true}`
	code, got = registryCall(t, a, "POST", "/api/v1/registry/devices", "admin-secret-0123456789", dev)
	secret, _ := got["secret"].(string)
	if code != http.StatusCreated || secret == "" {
		t.Fatalf("POST on A: %d %v", code, got)
	}
	// The servers send the auth callout to either instance: B, which does
	// not know the device yet, refuses it; A admits it.
	c := rc.admitted("sm-new", secret, 30*time.Second)
	if _, ok := b.registry.Load().LookupID("sm-new"); ok {
		t.Fatal("B knows the device before its message: the test would not show the catch-up")
	}
	rc.smokeAlarm(c, "sm-new")
	if owned := srcB.Owned(); len(owned) != 1 {
		t.Fatalf("B does not own the partition any more (%v): the test did not show B's catch-up", owned)
	}
	if n := srcB.RegistryCatchUps() - catchUps; n < 1 {
		t.Errorf("B made %d registry catch-ups for sm-new, want at least 1", n)
	}
	t.Logf("B's registry catch-ups: %d", srcB.RegistryCatchUps())
}
