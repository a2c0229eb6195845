package broker

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters of new hashes (RFC 9106, second recommended option
// scaled down): device secrets are random, so the KDF protects a leaked
// ledger against offline guessing of weak secrets, while the broker must
// still check thousands of reconnects after an outage. Each hash records
// its own parameters, so they can be raised without invalidating old ones.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// maxArgonMemory bounds the memory a hash from the ledger may ask for, so
// that a mistaken ledger cannot exhaust the broker's memory.
const maxArgonMemory = 256 * 1024

var errHashFormat = errors.New(`secret_hash is not "$argon2id$v=19$m=…,t=…,p=…$salt$hash" (make one with: firewatch hash-secret)`)

// HashSecret returns the PHC-format argon2id hash of secret, as the ledger's
// secret_hash stores it.
func HashSecret(secret []byte) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey(secret, salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// secretHash is a parsed secret_hash.
type secretHash struct {
	time, memory uint32
	threads      uint8
	salt, key    []byte
}

// CheckSecretHash reports whether h is a well-formed secret_hash.
func CheckSecretHash(h string) error {
	_, err := parseSecretHash(h)
	return err
}

func parseSecretHash(h string) (secretHash, error) {
	// By hand, not with fmt.Sscanf: a registry of a million devices has
	// hundreds of thousands of hashes to read at start (issue 18).
	var p secretHash
	parts := strings.Split(h, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, errHashFormat
	}
	if v, ok := hashParam(parts[2], "v="); !ok || v != argon2.Version {
		return p, errHashFormat
	}
	m, mRest, _ := strings.Cut(parts[3], ",")
	t, tp, _ := strings.Cut(mRest, ",")
	memory, okM := hashParam(m, "m=")
	time, okT := hashParam(t, "t=")
	threads, okP := hashParam(tp, "p=")
	if !okM || !okT || !okP {
		return p, errHashFormat
	}
	if time < 1 || time > 16 || threads < 1 || threads > 16 || memory < 8*threads || memory > maxArgonMemory {
		return p, fmt.Errorf("secret_hash parameters m=%d,t=%d,p=%d out of bounds (m ≤ %d KiB, t and p 1…16)", memory, time, threads, maxArgonMemory)
	}
	p.memory, p.time, p.threads = uint32(memory), uint32(time), uint8(threads)
	// Salt and key in one allocation.
	enc := base64.RawStdEncoding
	buf := make([]byte, enc.DecodedLen(len(parts[4]))+enc.DecodedLen(len(parts[5])))
	ns, err := enc.Decode(buf, []byte(parts[4]))
	if err != nil || ns < 8 {
		return p, errHashFormat
	}
	nk, err := enc.Decode(buf[ns:], []byte(parts[5]))
	if err != nil || nk < 16 {
		return p, errHashFormat
	}
	p.salt, p.key = buf[:ns:ns], buf[ns:ns+nk:ns+nk]
	return p, nil
}

// hashParam reads "name=digits" (name given with its '='), as uint64
// within uint32.
func hashParam(s, name string) (uint64, bool) {
	v, ok := strings.CutPrefix(s, name)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 32)
	return n, err == nil
}

// verify reports whether secret matches the hash, in constant time.
func (p *secretHash) verify(secret []byte) bool {
	key := argon2.IDKey(secret, p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	return subtle.ConstantTimeCompare(key, p.key) == 1
}

// GenerateSecret returns a new random device secret: 128 bits, base64url.
func GenerateSecret() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}
