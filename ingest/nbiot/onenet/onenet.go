package onenet

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/md5"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/ingest/nbiot"
)

// Config is one push instance (推送实例) or legacy push configuration.
type Config struct {
	// Token is the token set on OneNET's configuration page; it signs
	// both the verification GET and every POST. Required.
	Token string
	// AESKey is the 16-character key of secure mode (安全模式); empty means
	// plain mode (明文), and then an encrypted message is refused.
	AESKey string
	// IV is the AES-CBC initialisation vector. OneNET's documentation
	// seen does not state it; empty uses the key itself, the common
	// reading (unconfirmed: docs/nbiot.md).
	IV []byte
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.Token == "" {
		return errors.New("onenet: token is empty")
	}
	if c.AESKey != "" && len(c.AESKey) != 16 {
		return fmt.Errorf("onenet: aes key has %d bytes, want 16", len(c.AESKey))
	}
	if c.IV != nil && len(c.IV) != aes.BlockSize {
		return fmt.Errorf("onenet: iv has %d bytes, want 16", len(c.IV))
	}
	return nil
}

// Sign returns Base64(MD5(token + nonce + msg)), OneNET's signature.
func Sign(token, nonce, msg string) string {
	h := md5.New()
	h.Write([]byte(token))
	h.Write([]byte(nonce))
	h.Write([]byte(msg))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// checkSig compares sig with the signature of nonce and msg in constant
// time. A '+' of the base64 that reached us unescaped in a query string
// has become a space: it is put back.
func checkSig(token, nonce, msg, sig string) error {
	if sig == "" || nonce == "" {
		return fmt.Errorf("%w: signature or nonce missing", nbiot.ErrSignature)
	}
	sig = strings.ReplaceAll(sig, " ", "+")
	want := Sign(token, nonce, msg)
	if subtle.ConstantTimeCompare([]byte(sig), []byte(want)) != 1 {
		return nbiot.ErrSignature
	}
	return nil
}

// VerifyURL checks the verification GET's query values (already
// URL-decoded) and returns the body to answer: msg itself, nothing more.
func VerifyURL(token, msg, nonce, signature string) (string, error) {
	if msg == "" {
		return "", fmt.Errorf("%w: msg missing", nbiot.ErrMalformed)
	}
	if err := checkSig(token, nonce, msg, signature); err != nil {
		return "", err
	}
	return msg, nil
}

type envelope struct {
	Msg          json.RawMessage `json:"msg"`
	EncMsg       *string         `json:"enc_msg"`
	Signature    string          `json:"signature"`
	MsgSignature string          `json:"msg_signature"`
	Nonce        string          `json:"nonce"`
	ID           string          `json:"id"`
	Time         json.Number     `json:"time"`
}

type message struct {
	Type      *int            `json:"type"`
	DevID     json.Number     `json:"dev_id"`
	IMEI      string          `json:"imei"`
	DsID      string          `json:"ds_id"`
	At        json.Number     `json:"at"`
	Value     json.RawMessage `json:"value"`
	Status    *int            `json:"status"`
	LoginType int             `json:"login_type"`
	CmdType   int             `json:"cmd_type"`
	CmdID     string          `json:"cmd_id"`
}

// Decode verifies and decodes one POST body. The signature is checked
// first: nothing of an unsigned or wrongly signed body is decoded. In AES
// mode the message is decrypted after its signature is checked over the
// ciphertext. A body may carry several messages (an array); all or none are
// returned. Errors wrap the sentinels of package nbiot.
func Decode(c Config, body []byte) ([]nbiot.Report, error) {
	var e envelope
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("%w: %v", nbiot.ErrMalformed, err)
	}
	sig := e.Signature
	if sig == "" {
		sig = e.MsgSignature
	}
	var signed string // the msg text the signature covers
	var encrypted bool
	switch {
	case e.EncMsg != nil:
		signed, encrypted = *e.EncMsg, true
	case len(e.Msg) > 0 && e.Msg[0] == '"':
		if err := json.Unmarshal(e.Msg, &signed); err != nil {
			return nil, fmt.Errorf("%w: msg: %v", nbiot.ErrMalformed, err)
		}
		// A string msg is either the message's JSON (plain mode) or its
		// base64 ciphertext (secure mode).
		t := strings.TrimSpace(signed)
		encrypted = !(strings.HasPrefix(t, "{") || strings.HasPrefix(t, "["))
	case len(e.Msg) > 0 && (e.Msg[0] == '{' || e.Msg[0] == '['):
		signed = string(e.Msg) // legacy: the object as sent
	default:
		return nil, fmt.Errorf("%w: msg missing", nbiot.ErrMalformed)
	}
	if err := checkSig(c.Token, e.Nonce, signed, sig); err != nil {
		return nil, err
	}
	plain := []byte(signed)
	if encrypted {
		if c.AESKey == "" {
			return nil, fmt.Errorf("%w: encrypted message but no AES key configured", nbiot.ErrDecrypt)
		}
		var err error
		if plain, err = decrypt(c, signed); err != nil {
			return nil, err
		}
	}
	return decodeMessages(plain)
}

func decrypt(c Config, s string) ([]byte, error) {
	ct, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64: %v", nbiot.ErrDecrypt, err)
	}
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("%w: ciphertext of %d bytes", nbiot.ErrDecrypt, len(ct))
	}
	block, err := aes.NewCipher([]byte(c.AESKey))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", nbiot.ErrDecrypt, err)
	}
	iv := c.IV
	if iv == nil {
		iv = []byte(c.AESKey)
	}
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(pt, ct)
	n := int(pt[len(pt)-1])
	if n == 0 || n > aes.BlockSize {
		return nil, fmt.Errorf("%w: bad padding", nbiot.ErrDecrypt)
	}
	for _, b := range pt[len(pt)-n:] {
		if int(b) != n {
			return nil, fmt.Errorf("%w: bad padding", nbiot.ErrDecrypt)
		}
	}
	return pt[:len(pt)-n], nil
}

func decodeMessages(b []byte) ([]nbiot.Report, error) {
	b = bytes.TrimSpace(b)
	var msgs []message
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var err error
	switch {
	case len(b) > 0 && b[0] == '[':
		err = dec.Decode(&msgs)
	case len(b) > 0 && b[0] == '{':
		msgs = make([]message, 1)
		err = dec.Decode(&msgs[0])
	default:
		err = errors.New("msg is neither an object nor an array")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: msg: %v", nbiot.ErrMalformed, err)
	}
	if len(msgs) == 0 {
		return nil, fmt.Errorf("%w: msg is empty", nbiot.ErrMalformed)
	}
	out := make([]nbiot.Report, 0, len(msgs))
	for i := range msgs {
		r, err := report(&msgs[i])
		if err != nil {
			if len(msgs) > 1 {
				err = fmt.Errorf("msg %d: %w", i, err)
			}
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func report(m *message) (nbiot.Report, error) {
	r := nbiot.Report{Platform: nbiot.PlatformOneNET, Seq: -1}
	r.Device = nbiot.DeviceKey{PlatformID: m.DevID.String(), IMEI: m.IMEI}
	if m.DevID != "" {
		if _, err := strconv.ParseUint(m.DevID.String(), 10, 64); err != nil {
			return r, fmt.Errorf("%w: dev_id %q", nbiot.ErrMalformed, m.DevID)
		}
	}
	if r.Device.PlatformID == "" && r.Device.IMEI == "" {
		return r, fmt.Errorf("%w: no dev_id", nbiot.ErrNoDevice)
	}
	if m.At != "" {
		ms, err := m.At.Int64()
		if err != nil || ms <= 0 {
			return r, fmt.Errorf("%w: at %q", nbiot.ErrBadValue, m.At)
		}
		r.Time = time.UnixMilli(ms)
	}
	if m.Type == nil {
		return r, fmt.Errorf("%w: type missing", nbiot.ErrMalformed)
	}
	switch *m.Type {
	case 1:
		r.Type = nbiot.TypeData
		if m.DsID == "" || len(m.Value) == 0 {
			return r, fmt.Errorf("%w: data point without ds_id or value", nbiot.ErrBadPayload)
		}
		r.Service = m.DsID
		// One data point becomes a one-property object, so that a JSON
		// product codec maps OneNET streams and CTWing properties alike.
		k, _ := json.Marshal(m.DsID)
		r.JSON = make([]byte, 0, len(k)+len(m.Value)+3)
		r.JSON = append(append(append(append(append(r.JSON, '{'), k...), ':'), m.Value...), '}')
	case 2:
		r.Type = nbiot.TypePresence
		switch {
		case m.Status == nil:
			return r, fmt.Errorf("%w: online/offline without status", nbiot.ErrMalformed)
		case *m.Status == 1:
			r.Presence = nbiot.Online
		case *m.Status == 0:
			r.Presence = nbiot.Offline
		default:
			return r, fmt.Errorf("%w: status %d", nbiot.ErrBadValue, *m.Status)
		}
	case 7:
		r.Type = nbiot.TypeCommand
		c := &nbiot.Command{ID: m.CmdID}
		switch m.CmdType {
		case 1:
			c.Result = "ack"
		case 2:
			c.Result = "confirm"
		default:
			return r, fmt.Errorf("%w: cmd_type %d", nbiot.ErrBadValue, m.CmdType)
		}
		if c.ID == "" {
			return r, fmt.Errorf("%w: command result without cmd_id", nbiot.ErrMalformed)
		}
		r.Command = c
	default:
		return r, fmt.Errorf("%w: type %d", nbiot.ErrUnknownType, *m.Type)
	}
	return r, nil
}
