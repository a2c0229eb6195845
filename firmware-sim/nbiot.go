package sim

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// NB-IoT platform push emulators: what China Telecom CTWing and China
// Mobile OneNET send to an application's push URL for a thing-model smoke
// detector (docs/nbiot.md), so that firesim and tests can feed firewatch's
// /nbiot endpoints without an operator platform. The formats follow the
// captured payloads and documentation summarised in docs/nbiot.md; they are
// built here independently of firewatch's decoders (ingest/nbiot), so that
// each checks the other.

// SmokeState is what a thing-model smoke detector reports: Alarm_Status
// (0 normal, 1 smoke, 2 fault, 3 low battery, 4 tamper), Battery_Level %,
// RSRP dBm.
type SmokeState struct {
	AlarmStatus int
	Battery     int
	RSRP        int
}

// CTWingDataReport returns a CTWing subscription push (messageType
// dataReport) of a thing-model product: payload.serviceData carries the
// state. seq is upDataSN; -1 when the module sends none.
func CTWingDataReport(tenant, product, deviceID, imei string, seq int64, at time.Time, s SmokeState) []byte {
	v := map[string]any{
		"upPacketSN": -1, "upDataSN": seq, "topic": "v1/up/ad19", "timestamp": at.UnixMilli(),
		"tenantId": tenant, "serviceId": 1, "protocol": "lwm2m", "productId": product,
		"messageType": "dataReport", "deviceType": "", "deviceId": deviceID, "assocAssetId": "",
		"IMEI": imei, "IMSI": "undefined",
		"payload": map[string]any{"serviceId": "notification", "serviceData": map[string]any{
			"Alarm_Status": s.AlarmStatus, "Battery_Level": s.Battery, "RSRP": s.RSRP, "IMEI": imei}},
	}
	b, _ := json.Marshal(v)
	return b
}

// OneNETDataPoint returns the inner message of a OneNET push of one data
// point (type 1): {"type":1,"dev_id":…,"ds_id":…,"at":…,"value":…}.
func OneNETDataPoint(devID int64, ds string, at time.Time, value any) []byte {
	b, _ := json.Marshal(map[string]any{"type": 1, "dev_id": devID, "ds_id": ds, "at": at.UnixMilli(), "value": value})
	return b
}

// OneNETSign is OneNET's signature: Base64(MD5(token + nonce + msg)).
func OneNETSign(token, nonce, msg string) string {
	sum := md5.Sum([]byte(token + nonce + msg))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// OneNETPush wraps msg in a OneNET push body {"id","time","msg","signature",
// "nonce"} signed with token. With a 16-byte aesKey (安全模式) msg is
// AES-128-CBC encrypted with PKCS#7 padding, the key as IV (the common
// reading; docs/nbiot.md), base64-encoded, and the signature covers the
// ciphertext.
func OneNETPush(token, aesKey string, msg []byte, at time.Time) ([]byte, error) {
	var nb [6]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return nil, err
	}
	nonce := base64.RawURLEncoding.EncodeToString(nb[:])
	text := string(msg)
	if aesKey != "" {
		block, err := aes.NewCipher([]byte(aesKey))
		if err != nil {
			return nil, fmt.Errorf("onenet aes key: %w", err)
		}
		n := aes.BlockSize - len(msg)%aes.BlockSize
		pt := append(append([]byte(nil), msg...), bytes.Repeat([]byte{byte(n)}, n)...)
		ct := make([]byte, len(pt))
		cipher.NewCBCEncrypter(block, []byte(aesKey)).CryptBlocks(ct, pt)
		text = base64.StdEncoding.EncodeToString(ct)
	}
	b, err := json.Marshal(map[string]any{"id": strconv.FormatInt(at.UnixNano(), 36), "time": at.UnixMilli(),
		"msg": text, "signature": OneNETSign(token, nonce, text), "nonce": nonce})
	return b, err
}

// ErrRefused is a push the application refused for good (4xx): a platform
// does not retry it either.
var ErrRefused = errors.New("push refused")

// Push posts body to url as a platform does: a 200 takes it; any other
// answer, or none, is retried with the given backoff (OneNET documents
// 5 s, 10 s, 30 s, … up to 16 retries) until ctx ends. A 4xx other than
// 429 ends with ErrRefused. It returns the number of attempts.
func Push(ctx context.Context, c *http.Client, url string, body []byte, backoff []time.Duration) (int, error) {
	for n := 1; ; n++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return n, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err == nil {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusOK:
				return n, nil
			case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests:
				return n, fmt.Errorf("%w: %s: %s", ErrRefused, resp.Status, bytes.TrimSpace(msg))
			}
			err = fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
		}
		if n > len(backoff) {
			return n, fmt.Errorf("push not taken after %d attempts: %w", n, err)
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-time.After(backoff[n-1]):
		}
	}
}
