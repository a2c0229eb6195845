package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/nats-io/nkeys"

	"github.com/firewatch-iot/firewatch/broker"
)

// Issue 15 (make cluster with the auth callout): a demo ledger whose devices
// each have a secret of their own (firesim ledger -secrets), and a fleet
// that connects each device with it (firesim run -secrets), as real devices
// do with the embedded broker or the cluster's auth callout.

// makeSecrets returns a random secret for each id and its argon2id hash
// (broker.HashSecret, what firewatch hash-secret writes), hashing on every
// core: about 35 ms of CPU each.
func makeSecrets(ids []string) (secrets, hashes map[string]string, err error) {
	secrets, hashes = make(map[string]string, len(ids)), make(map[string]string, len(ids))
	for _, id := range ids {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, nil, err
		}
		secrets[id] = hex.EncodeToString(b)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan string)
	for range runtime.NumCPU() {
		wg.Go(func() {
			for id := range work {
				h, e := broker.HashSecret([]byte(secrets[id]))
				mu.Lock()
				if e != nil && err == nil {
					err = e
				}
				hashes[id] = h
				mu.Unlock()
			}
		})
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	return secrets, hashes, err
}

// writeSecrets writes "id secret" lines, readable by the owner only: the
// secrets are what the devices hold, the ledger keeps only their hashes.
func writeSecrets(path string, ids []string, secrets map[string]string) error {
	var b strings.Builder
	b.WriteString("# firesim device secrets (MQTT passwords), one \"id secret\" a line: for firesim run -secrets.\n")
	b.WriteString("# The ledger holds only their argon2id hashes. Demo credentials: do not use them for real devices.\n")
	for _, id := range ids {
		fmt.Fprintf(&b, "%s %s\n", id, secrets[id])
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write secrets: %w", err)
	}
	return os.Chmod(path, 0o600) // an existing file keeps its mode otherwise
}

// readSecrets reads a file of writeSecrets.
func readSecrets(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, secret, ok := strings.Cut(line, " ")
		if !ok || id == "" || strings.TrimSpace(secret) == "" {
			return nil, fmt.Errorf("secrets %s:%d: want \"id secret\"", path, n)
		}
		out[id] = strings.TrimSpace(secret)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("secrets %s: %w", path, err)
	}
	return out, nil
}

// cmdNKey writes an account nkey seed for the cluster's auth callout
// (docs/cluster.md "Credentials": the key that signs the devices' users)
// unless the file exists, and prints its public key, the nodes' issuer.
func cmdNKey(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("nkey",
		"Write an account nkey seed (SA…, mode 0600) for the auth callout of cluster mode\n"+
			"(cluster.callout_seed), unless the file exists, and print its public key (A…): the\n"+
			"issuer of the nodes' auth_callout block. As 'nk -gen account' or 'nsc generate nkey --account'.",
		"  firesim nkey -o var/cluster/callout.nk\n", stderr)
	out := fs.String("o", "", "seed file (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		fmt.Fprintln(stderr, "firesim nkey: -o is required")
		return errUsage
	}
	seed, err := os.ReadFile(*out)
	if errors.Is(err, os.ErrNotExist) {
		kp, err := nkeys.CreateAccount()
		if err != nil {
			return err
		}
		if seed, err = kp.Seed(); err != nil {
			return err
		}
		if err := os.WriteFile(*out, seed, 0o600); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
	if err != nil {
		return fmt.Errorf("%s: %w", *out, err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return err
	}
	if !strings.HasPrefix(pub, "A") {
		return fmt.Errorf("%s: not an account key (%s…)", *out, pub[:1])
	}
	fmt.Fprintln(stdout, pub)
	return nil
}
