package main

import (
	"bufio"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/broker"
)

// hashSecret implements `firewatch hash-secret`: it reads a device, gateway
// or bridge secret from standard input (not from the command line, where
// shell history and ps would keep it) and prints the argon2id hash for the
// ledger's secret_hash. With -generate it makes a random secret and prints
// both, the secret first.
func hashSecret(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hash-secret", flag.ContinueOnError)
	fs.SetOutput(stderr)
	gen := fs.Bool("generate", false, "generate a random 128-bit secret and print it, then its hash")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: firewatch hash-secret [-generate] < secret\n\nPrints the argon2id hash of the secret read from standard input, for secret_hash in the ledger.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var secret string
	if *gen {
		secret = broker.GenerateSecret()
		fmt.Fprintln(stdout, secret)
	} else {
		line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
		if err != nil && err != io.EOF {
			fmt.Fprintf(stderr, "hash-secret: %v\n", err)
			return 1
		}
		secret = strings.TrimRight(line, "\r\n")
		if secret == "" {
			fmt.Fprintln(stderr, "hash-secret: empty secret on standard input")
			return 2
		}
	}
	h, err := broker.HashSecret([]byte(secret))
	if err != nil {
		fmt.Fprintf(stderr, "hash-secret: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, h)
	return 0
}

// pushKey implements `firewatch push-key RECIPIENT...`: it reads
// alarms.secret from standard input and prints, for each recipient (a
// station id from the ledger, or "brigade"), the key that receiver
// verifies its pushes with (alarms.PushKey, hex), one "recipient key" a
// line. Give each receiver its own key, never alarms.secret.
func pushKey(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "usage: firewatch push-key RECIPIENT... < alarms.secret\n\nPrints the signing key of each dispatch receiver (a station id, or brigade), derived from alarms.secret read from standard input.")
		return 2
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && err != io.EOF {
		fmt.Fprintf(stderr, "push-key: %v\n", err)
		return 1
	}
	secret := strings.TrimRight(line, "\r\n")
	if len(secret) < alarms.MinSecretLen {
		fmt.Fprintf(stderr, "push-key: alarms.secret on standard input is shorter than %d characters\n", alarms.MinSecretLen)
		return 2
	}
	for _, r := range args {
		fmt.Fprintf(stdout, "%s %s\n", r, hex.EncodeToString(alarms.PushKey([]byte(secret), r)))
	}
	return 0
}
