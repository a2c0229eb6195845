package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestSimResponder: a fire push with a responder link gets 接警, 出动, 到场
// through the link, in order, with the token in the header; other pushes
// get nothing.
func TestSimResponder(t *testing.T) {
	taps := make(chan string, 10)
	fw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b struct{ Action, Name string }
		json.NewDecoder(r.Body).Decode(&b)
		if r.URL.Path != "/r/alm-000001/tap" || r.Header.Get("X-Responder-Token") != "tok" || b.Name == "" {
			t.Errorf("tap %s token %q body %+v", r.URL.Path, r.Header.Get("X-Responder-Token"), b)
		}
		taps <- b.Action
	}))
	defer fw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sr := newSimResponder(ctx, time.Millisecond, io.Discard, nil)
	sr.onPush([]byte(`{"transition":"raised","severity":"alarm","alarm_id":"alm-000002","responder_url":"` + fw.URL + `/r/alm-000002#t=tok"}`))
	sr.onPush([]byte(`{"transition":"raised","severity":"fire","alarm_id":"alm-000001","responder_url":"` + fw.URL + `/r/alm-000001#t=tok"}`))
	for _, want := range []string{"ack", "dispatch", "arrive"} {
		select {
		case got := <-taps:
			if got != want {
				t.Fatalf("tap %s, want %s", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s tap", want)
		}
	}
	select {
	case got := <-taps:
		t.Errorf("extra tap %s", got)
	case <-time.After(50 * time.Millisecond):
	}
}
