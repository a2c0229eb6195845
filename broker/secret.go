package broker

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
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
	var p secretHash
	parts := strings.Split(h, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, errHashFormat
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, errHashFormat
	}
	var threads uint32
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.memory, &p.time, &threads); err != nil {
		return p, errHashFormat
	}
	if p.time < 1 || p.time > 16 || threads < 1 || threads > 16 || p.memory < 8*threads || p.memory > maxArgonMemory {
		return p, fmt.Errorf("secret_hash parameters m=%d,t=%d,p=%d out of bounds (m ≤ %d KiB, t and p 1…16)", p.memory, p.time, threads, maxArgonMemory)
	}
	p.threads = uint8(threads)
	var err error
	if p.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(p.salt) < 8 {
		return p, errHashFormat
	}
	if p.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(p.key) < 16 {
		return p, errHashFormat
	}
	return p, nil
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
