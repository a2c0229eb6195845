// Package httpjson writes the JSON answers of firewatch's HTTP handlers
// (the alarm API, the responder page and console, the GB/T 26875.3 API) in
// one way: UTF-8 JSON with HTML characters left as they are, so that
// Chinese texts and "<" in notes read the same in a browser and in curl.
package httpjson

import (
	"encoding/json"
	"net/http"
)

// Write answers status with v as JSON. An encoding error is not reported:
// the status line is already written.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}
