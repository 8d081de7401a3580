package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"github.com/leadstream/leadstream/notify"
	"github.com/leadstream/leadstream/stream"
)

// runNotifier runs the notifier role: the mql (and mqa) topics to the
// destinations of notify.config.
func runNotifier(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("notifier", flag.ContinueOnError)
	var cfg notify.Config
	cfg.Kafka.RegisterFlags(fs)
	cfg.ClickHouse.RegisterFlags(fs)
	cfg.RegisterFlags(fs)
	admin := fs.String("http.addr", ":9103", "address of /healthz, /readyz and /metrics")
	if err := parse(fs, args); err != nil {
		return err
	}
	if cfg.File == "" {
		return errors.New("notifier: notify.config (LEADSTREAM_NOTIFY_CONFIG) names no destinations file")
	}
	dests, err := notify.LoadFile(cfg.File)
	if err != nil {
		return err
	}
	cfg.Version = version
	if err := checkKafka(ctx, cfg.Kafka, log); err != nil {
		return err
	}
	// Every attempt is recorded in ClickHouse, which the notifier reaches
	// only when it has one to record: a server that refuses it (credentials,
	// TLS, cluster settings) is told now, as by every role. One that does
	// not answer may come back: warned, and the recorder retries.
	if err := checkClickHouse(ctx, cfg.ClickHouse); err != nil {
		if !unreachable(err) {
			return fmt.Errorf("notifier: recording attempts: %w", err)
		}
		log.Warn("clickhouse not reachable at start: attempts are recorded once it is", "err", err)
	}
	kafkaCheck, release, err := kafkaReady(cfg.Kafka)
	if err != nil {
		return err
	}
	defer release()
	reg := newRegistry()
	if err := stream.EnsureTopics(ctx, cfg.Kafka); err != nil {
		log.Warn("could not create topics; expecting them to exist", "err", err)
	}
	n, err := notify.New(cfg, dests, log, reg)
	if err != nil {
		return err
	}
	stopAdmin, err := serveAdmin(*admin, reg, func(ctx context.Context) error {
		if !n.Ready() {
			return errors.New("notifier not running")
		}
		return kafkaCheck(ctx)
	}, log)
	if err != nil {
		return err
	}
	defer stopAdmin()
	return n.Run(ctx)
}
