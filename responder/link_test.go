package responder

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestLinkToken(t *testing.T) {
	now := time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)
	s := NewSigner("https://fw.example.cn/", time.Hour, []byte("new-secret-0123456789"), []byte("old-secret-0123456789"))
	s.now = func() time.Time { return now }
	link := s.Link("alm-000007", "st-tanxi", s.now())
	prefix := "https://fw.example.cn/r/alm-000007#t="
	if !strings.HasPrefix(link, prefix) {
		t.Fatalf("link %q: want the token in the fragment after %s", link, prefix)
	}
	tok := strings.TrimPrefix(link, prefix)
	c, err := s.Check(tok, "alm-000007")
	if err != nil || c.Station != "st-tanxi" || !c.Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("good token: %+v %v", c, err)
	}
	// A link signed with the previous secret (alarms.secret_previous)
	// still works during a rotation.
	old := NewSigner("https://fw.example.cn", time.Hour, []byte("old-secret-0123456789"))
	old.now = s.now
	if _, err := s.Check(old.Token(Claims{"alm-000007", "st-tanxi", now.Add(time.Minute)}), "alm-000007"); err != nil {
		t.Errorf("previous key: %v", err)
	}
	other := NewSigner("https://fw.example.cn", time.Hour, []byte("someone-elses-secret"))
	parts := strings.Split(tok, ".")
	forged, _ := base64.RawURLEncoding.DecodeString(parts[1])
	swapped := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(forged), "alm-000007", "alm-000008", 1)))
	for _, c := range []struct {
		name, token, alarm string
		at                 time.Time
		want               error
		reason             string
	}{
		{"expired", tok, "alm-000007", now.Add(time.Hour), ErrExpired, "expired"},
		{"other alarm", tok, "alm-000008", now, ErrOtherAlarm, "other_alarm"},
		{"payload changed to another alarm", parts[0] + "." + swapped + "." + parts[2], "alm-000008", now, ErrBadMAC, "bad_signature"},
		{"signature changed", parts[0] + "." + parts[1] + "." + strings.Repeat("A", 43), "alm-000007", now, ErrBadMAC, "bad_signature"},
		{"other key", other.Token(Claims{"alm-000007", "st-tanxi", now.Add(time.Hour)}), "alm-000007", now, ErrBadMAC, "bad_signature"},
		{"version", "r2." + parts[1] + "." + parts[2], "alm-000007", now, ErrMalformed, "malformed"},
		{"garbage", "not a token", "alm-000007", now, ErrMalformed, "malformed"},
		{"huge", strings.Repeat("a", 10000), "alm-000007", now, ErrMalformed, "malformed"},
		{"missing", "", "alm-000007", now, errNoToken, "missing"},
	} {
		at := c.at
		s.now = func() time.Time { return at }
		_, err := s.Check(c.token, c.alarm)
		if !errors.Is(err, c.want) || reason(err) != c.reason {
			t.Errorf("%s: %v (reason %s), want %v (%s)", c.name, err, reason(err), c.want, c.reason)
		}
	}
	if NewSigner("", 0, []byte("x")).Link("alm-1", "st", time.Now()) != "" || NewSigner("http://h", 0).Link("alm-1", "st", time.Now()) != "" || NewSigner("http://h", 0, []byte("x")).Link("alm-1", "", time.Now()) != "" {
		t.Error("a link without base URL or key")
	}
}

func TestLimiter(t *testing.T) {
	l := newLimiter(1, 3)
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		if !l.allow("a", t0) {
			t.Fatalf("request %d refused within the burst", i)
		}
	}
	if l.allow("a", t0) {
		t.Error("4th request in the same instant allowed")
	}
	if !l.allow("b", t0) {
		t.Error("another address refused")
	}
	if !l.allow("a", t0.Add(1100*time.Millisecond)) {
		t.Error("refused after refill")
	}
}

func TestCheckName(t *testing.T) {
	for n, ok := range map[string]bool{"张三": true, " 李 四 ": true, "": false, "<script>": false, "王小明小明小明小明小明小明小明小明小明小明": false, "a\nb": false} {
		if _, got := checkName(n); got != ok {
			t.Errorf("checkName(%q) = %v", n, got)
		}
	}
}

// TestLinkSameOnRetry: every delivery attempt of one push carries the same
// link (its expiry counts from when the push was queued), so that a retried
// push is the same bytes as the first; the link still expires TTL after
// the push was queued.
func TestLinkSameOnRetry(t *testing.T) {
	queued := time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)
	now := queued
	s := NewSigner("https://fw.example.cn", time.Hour, []byte("new-secret-0123456789"))
	s.now = func() time.Time { return now }
	first := s.Link("alm-000007", "st-tanxi", queued)
	now = queued.Add(17 * time.Minute) // a retry after the receiver was down
	if again := s.Link("alm-000007", "st-tanxi", queued); again != first {
		t.Fatalf("retry carries another link:\n%s\n%s", first, again)
	}
	tok := first[strings.Index(first, "#t=")+3:]
	if _, err := s.Check(tok, "alm-000007"); err != nil {
		t.Fatalf("within the TTL of its queueing: %v", err)
	}
	now = queued.Add(time.Hour)
	if _, err := s.Check(tok, "alm-000007"); err == nil {
		t.Fatal("a link is good past TTL after its push was queued")
	}
}
