package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"
)

const defaultHealthURL = "http://127.0.0.1:8080/readyz"

// runHealthcheck requests a role's /readyz (or any URL) and fails unless it
// answers 2xx in time: the health check of the container image, which has no
// shell or curl. Usage: leadstream healthcheck [-timeout 3s] [URL].
func runHealthcheck(args []string) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	timeout := fs.Duration("timeout", 3*time.Second, "longest wait for the answer")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Printf("usage: leadstream healthcheck [-timeout 3s] [URL]\n\nExits 0 when URL (default %s) answers 2xx within the timeout, else 1.\n", defaultHealthURL)
			return nil
		}
		return fmt.Errorf("healthcheck: %w", err)
	}
	if fs.NArg() > 1 {
		return fmt.Errorf("healthcheck: unexpected argument %q", fs.Arg(1))
	}
	url := defaultHealthURL
	if fs.NArg() == 1 {
		url = fs.Arg(0)
	}
	client := &http.Client{Timeout: *timeout}
	resp, err := client.Get(url)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("healthcheck: %s answered %s: %s", url, resp.Status, body)
	}
	return nil
}
