package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/alarms"
)

var secret = []byte("test-secret")

// signedRequest builds a push as firewatch signs it.
func signedRequest(t *testing.T, key []byte, station, idem, body string) *http.Request {
	t.Helper()
	ts := strconv.FormatInt(time.Date(2026, 3, 1, 19, 30, 0, 0, time.UTC).Unix(), 10)
	r := httptest.NewRequest(http.MethodPost, "/dispatch/"+station, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(headerTimestamp, ts)
	r.Header.Set(headerSignature, alarms.Sign(key, ts, []byte(body)))
	if idem != "" {
		r.Header.Set(headerIdempotency, idem)
	}
	return r
}

func newTestReceiver() (*receiver, *bytes.Buffer) {
	var out bytes.Buffer
	rc := newReceiver(secret, &out)
	rc.now = func() time.Time { return time.Date(2026, 3, 1, 19, 30, 0, 120e6, time.UTC) }
	return rc, &out
}

const firePush = `{"severity":"fire","message":"【火警】柳州市柳南区潭西街道龙屯社区 航岭路18号3栋 独立式感烟火灾探测报警器 sm-450204-0065 烟雾报警","device":"sm-450204-0065"}`

func serve(rc *receiver, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	rc.ServeHTTP(w, r)
	return w
}

func TestReceiverAcceptsSignedPush(t *testing.T) {
	rc, out := newTestReceiver()
	w := serve(rc, signedRequest(t, secret, "mfs-450204002", "al-42-raise", firePush))
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	for _, want := range []string{
		"received   2026-03-01 19:30:00.120 UTC",
		"station    mfs-450204002",
		"severity   fire 火警",
		"message    【火警】柳州市柳南区潭西街道龙屯社区",
		"key        al-42-raise",
		"signature  OK",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("printed block lacks %q:\n%s", want, out)
		}
	}
	if st := rc.stats(); st.accepted != 1 || st.rejected != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestReceiverRejectsBadSignature(t *testing.T) {
	for name, mutate := range map[string]func(r *http.Request){
		"wrong secret": func(r *http.Request) { *r = *signedRequest(t, []byte("other"), "mfs-450204002", "k1", firePush) },
		"changed time": func(r *http.Request) { r.Header.Set(headerTimestamp, "1772393401") },
		"no signature": func(r *http.Request) { r.Header.Del(headerSignature) },
		"no timestamp": func(r *http.Request) { r.Header.Del(headerTimestamp) },
		"not sha256=": func(r *http.Request) {
			r.Header.Set(headerSignature, strings.TrimPrefix(r.Header.Get(headerSignature), "sha256="))
		},
		"not hex":        func(r *http.Request) { r.Header.Set(headerSignature, "sha256=zz") },
		"truncated":      func(r *http.Request) { r.Header.Set(headerSignature, r.Header.Get(headerSignature)[:20]) },
		"body tampering": func(r *http.Request) { *r = *withBody(r, strings.Replace(firePush, "fire", "warning", 1)) },
	} {
		t.Run(name, func(t *testing.T) {
			rc, out := newTestReceiver()
			r := signedRequest(t, secret, "mfs-450204002", "k1", firePush)
			mutate(r)
			if w := serve(rc, r); w.Code != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", w.Code)
			}
			if !strings.Contains(out.String(), "signature  BAD") {
				t.Errorf("block does not say BAD:\n%s", out)
			}
			// A rejected push does not burn its idempotency key.
			if w := serve(rc, signedRequest(t, secret, "mfs-450204002", "k1", firePush)); w.Code != http.StatusOK {
				t.Errorf("the correctly signed push after it: status %d", w.Code)
			}
			if st := rc.stats(); st.accepted != 1 || st.rejected != 1 || st.duplicates != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func withBody(r *http.Request, body string) *http.Request {
	n := httptest.NewRequest(r.Method, r.URL.Path, strings.NewReader(body))
	n.Header = r.Header.Clone()
	return n
}

func TestReceiverDeduplicates(t *testing.T) {
	rc, out := newTestReceiver()
	for i := 0; i < 3; i++ { // the outbox retries, e.g. after a lost response
		if w := serve(rc, signedRequest(t, secret, "mfs-450204002", "al-42-raise", firePush)); w.Code != http.StatusOK {
			t.Fatalf("push %d: status %d", i, w.Code)
		}
	}
	if w := serve(rc, signedRequest(t, secret, "mfs-450204002", "al-42-clear", firePush)); w.Code != http.StatusOK {
		t.Fatalf("second key: status %d", w.Code)
	}
	if st := rc.stats(); st.accepted != 2 || st.duplicates != 2 {
		t.Errorf("stats %+v, want 2 accepted and 2 duplicates", st)
	}
	if n := strings.Count(out.String(), "key        al-42-raise"); n != 1 {
		t.Errorf("al-42-raise printed %d times:\n%s", n, out)
	}
	if n := strings.Count(out.String(), "duplicate push al-42-raise"); n != 2 {
		t.Errorf("%d duplicate notes:\n%s", n, out)
	}
}

func TestReceiverBadRequests(t *testing.T) {
	rc, _ := newTestReceiver()
	if w := serve(rc, signedRequest(t, secret, "mfs-1", "", firePush)); w.Code != http.StatusBadRequest {
		t.Errorf("no Idempotency-Key: status %d, want 400", w.Code)
	}
	if w := serve(rc, signedRequest(t, secret, "mfs-1", "k", "not json")); w.Code != http.StatusBadRequest {
		t.Errorf("signed non-JSON body: status %d, want 400", w.Code)
	}
	if w := serve(rc, httptest.NewRequest(http.MethodGet, "/dispatch/mfs-1", nil)); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d, want 405", w.Code)
	}
	if w := serve(rc, httptest.NewRequest(http.MethodPost, "/other", nil)); w.Code != http.StatusNotFound {
		t.Errorf("POST /other: status %d, want 404", w.Code)
	}
	big := signedRequest(t, secret, "mfs-1", "k2", `{"message":"`+strings.Repeat("x", maxPushBody)+`"}`)
	if w := serve(rc, big); w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: status %d, want 413", w.Code)
	}
	if st := rc.stats(); st.accepted != 0 {
		t.Errorf("stats %+v", st)
	}
}
