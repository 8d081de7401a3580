// Package warehousetest opens fresh databases on the test ClickHouse server
// for the tests of warehouse and of the packages that read or write it.
package warehousetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/warehouse"
)

// Open connects to the test ClickHouse and returns the configuration of a
// fresh database named prefix_<random>, dropped when the test ends. The
// database itself is not created (warehouse.Migrate does that).
func Open(t testing.TB, prefix string) (driver.Conn, warehouse.Config) {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	cfg := warehouse.Config{
		Addr:        testsvc.ClickHouse(t),
		Database:    prefix + "_" + hex.EncodeToString(b[:]),
		Username:    "default",
		DialTimeout: 5 * time.Second,
	}
	conn, err := warehouse.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+cfg.Database); err != nil {
			t.Errorf("dropping %s: %v", cfg.Database, err)
		}
		conn.Close()
	})
	return conn, cfg
}

// OpenCluster is Open on the test ClickHouse cluster (testsvc.ClickHouseCluster):
// cfg.Cluster names it, cfg.Addr lists every node, and the database is
// dropped ON CLUSTER when the test ends.
func OpenCluster(t testing.TB, prefix string) (driver.Conn, warehouse.Config) {
	t.Helper()
	c := testsvc.ClickHouseCluster(t)
	var b [6]byte
	rand.Read(b[:])
	cfg := warehouse.Config{
		Addr:        c.Addr(),
		Database:    prefix + "_" + hex.EncodeToString(b[:]),
		Username:    "default",
		DialTimeout: 5 * time.Second,
		Cluster:     c.Name,
	}
	conn, err := warehouse.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+cfg.Database+" ON CLUSTER "+cfg.Cluster); err != nil {
			t.Errorf("dropping %s: %v", cfg.Database, err)
		}
		conn.Close()
	})
	return conn, cfg
}

// MigratedCluster is OpenCluster with the schema in place.
func MigratedCluster(t testing.TB, prefix string) (driver.Conn, warehouse.Config) {
	t.Helper()
	conn, cfg := OpenCluster(t, prefix)
	if err := warehouse.MigrateCluster(context.Background(), conn, cfg.Database, cfg.Cluster); err != nil {
		t.Fatal(err)
	}
	return conn, cfg
}

// Node connects to one node of the test cluster by its address, closed when
// the test ends: to look at the local tables of one shard or replica.
func Node(t testing.TB, addr string) driver.Conn {
	t.Helper()
	conn, err := warehouse.Open(context.Background(), warehouse.Config{Addr: addr, Database: "default", Username: "default", DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Migrated is Open with the schema in place.
func Migrated(t testing.TB, prefix string) (driver.Conn, warehouse.Config) {
	t.Helper()
	conn, cfg := Open(t, prefix)
	if err := warehouse.Migrate(context.Background(), conn, cfg.Database); err != nil {
		t.Fatal(err)
	}
	return conn, cfg
}

// Count runs q, which must return one UInt64.
func Count(t testing.TB, conn driver.Conn, q string) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}
