package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/leadstream/leadstream/ingest/token"
	"github.com/leadstream/leadstream/internal/secretflag"
)

const tokenUsage = `usage:
  leadstream token open  --lead ID --campaign C --message M [--sent-at TIME] [--ttl DURATION] [--public-url URL]
  leadstream token click --lead ID --campaign C --message M --url TARGET [--sent-at TIME] [--ttl DURATION] [--public-url URL]
  leadstream token verify TOKEN_OR_URL

Prints the email-open pixel URL (/o/{token}.gif) or the click URL (/c/{token}),
signed with the first key of LEADSTREAM_TOKEN_KEYS (kid:secret,…). --base is
accepted for --public-url (env LEADSTREAM_PUBLIC_URL). --sent-at (RFC 3339,
default now) is when the message goes out: opens and clicks sooner after it
than collector.scanner-min-delay are flagged as scanner traffic. --ttl
(default 4320h, 180 days) is how long from now the link counts: later, a
click still redirects but nothing is recorded.`

// helpAsked reports whether a command that takes a subcommand was asked
// for help instead (-h, -help, --help): it prints its usage and exits 0.
func helpAsked(args []string) bool {
	return len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help")
}

// runToken mints (or checks) email tracking links for sending systems that
// do not use the Go API (package ingest/token).
func runToken(args []string) error {
	if helpAsked(args) {
		fmt.Println(tokenUsage + "\n\nEach command's flags: leadstream token open -h")
		return nil
	}
	if len(args) == 0 {
		return errors.New(tokenUsage)
	}
	sub, args := args[0], args[1:]
	var tok string
	if sub == "verify" {
		if len(args) == 0 {
			return errors.New(tokenUsage)
		}
		tok, args = args[len(args)-1], args[:len(args)-1]
	} else if sub != "open" && sub != "click" {
		return fmt.Errorf("unknown token command %q\n%s", sub, tokenUsage)
	}
	fs := flag.NewFlagSet("token "+sub, flag.ContinueOnError)
	var keys []token.Key
	secretflag.Func(fs, "token-keys", "email token keys, comma-separated kid:secret; the first one signs", func(s string) error {
		var err error
		keys, err = token.ParseKeys(s)
		return err
	})
	base := fs.String("public-url", "http://127.0.0.1:8080", "the collector's public base URL, as email readers reach it")
	var c token.Claims
	fs.StringVar(&c.Lead, "lead", "", "lead id of the recipient")
	fs.StringVar(&c.Campaign, "campaign", "", "campaign id")
	fs.StringVar(&c.Message, "message", "", "message id (one send of one email to one lead)")
	fs.StringVar(&c.URL, "url", "", "click target (click only)")
	sentAt := fs.String("sent-at", "", "when the message is sent, RFC 3339 (default now)")
	ttl := fs.Duration("ttl", token.DefaultTTL, "how long from now opens and clicks of the link count")
	if err := parse(fs, baseAlias(args)); err != nil {
		return err
	}
	kr, err := token.NewKeyring(keys...)
	if err != nil {
		return err
	}
	if sub == "verify" {
		return verifyToken(kr, tok)
	}
	if *ttl <= 0 {
		return errors.New("--ttl must be > 0")
	}
	c.SentAt = time.Now()
	c.Expires = c.SentAt.Add(*ttl)
	if *sentAt != "" {
		if c.SentAt, err = time.Parse(time.RFC3339, *sentAt); err != nil {
			return fmt.Errorf("--sent-at: want RFC 3339 (2026-11-22T09:00:00Z): %w", err)
		}
	}
	var u string
	if sub == "open" {
		u, err = kr.OpenURL(*base, c)
	} else {
		u, err = kr.ClickURL(*base, c)
	}
	if err != nil {
		return err
	}
	fmt.Println(u)
	return nil
}

// baseAlias rewrites --base/-base to -public-url, so both spellings work and
// the environment never overrides a --base given on the command line.
func baseAlias(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		for _, p := range []string{"--base", "-base"} {
			if a == p {
				a = "-public-url"
			} else if v, ok := strings.CutPrefix(a, p+"="); ok {
				a = "-public-url=" + v
			}
		}
		out[i] = a
	}
	return out
}

func verifyToken(kr *token.Keyring, s string) error {
	// Accept a whole link as well as the bare token.
	if i := strings.LastIndex(s, "/o/"); i >= 0 {
		s = strings.TrimSuffix(s[i+3:], ".gif")
	} else if i := strings.LastIndex(s, "/c/"); i >= 0 {
		s = s[i+3:]
	}
	c, err := kr.Verify(s)
	expired := errors.Is(err, token.ErrExpired)
	if err != nil && !expired {
		return err
	}
	kind := "open"
	if c.Kind == token.Click {
		kind = "click"
	}
	state := "valid"
	if expired {
		state = "expired" // signed by the key, but no longer counts: not "valid"
	}
	fmt.Printf("%s %s token (key %s)\n  lead      %s\n  campaign  %s\n  message   %s\n", state, kind, c.KeyID, c.Lead, c.Campaign, c.Message)
	if c.URL != "" {
		fmt.Printf("  url       %s\n", c.URL)
	}
	if !c.SentAt.IsZero() {
		fmt.Printf("  sent at   %s\n", c.SentAt.Format(time.RFC3339))
	}
	fmt.Printf("  expires   %s\n", c.Expires.Format(time.RFC3339))
	if expired {
		return fmt.Errorf("the token expired at %s: opens and clicks of it are not recorded", c.Expires.Format(time.RFC3339))
	}
	return nil
}
