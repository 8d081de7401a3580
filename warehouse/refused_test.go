package warehouse_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/leadstream/leadstream/internal/localsvc"
	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// Refused tells ClickHouse refusing the rows of an INSERT (worth
// isolating them) from everything retrying fixes, on the errors a real
// server and the client give.
func TestRefused(t *testing.T) {
	conn, cfg := warehousetest.Migrated(t, "refused")
	ctx := context.Background()
	if err := conn.Exec(ctx, "ALTER TABLE "+cfg.Database+".mql ADD COLUMN refuse UInt8 MATERIALIZED throwIf(model = 'poison')"); err != nil {
		t.Fatal(err)
	}
	insert := func(table, model string) error {
		cols := []warehouse.Column{{Name: "mql_id", Values: []string{"m"}}, {Name: "model", Values: []string{model}},
			{Name: "crossed_at", Values: []time.Time{time.Now()}}}
		return warehouse.Insert(ctx, conn, cfg.Database, table, 1, cols)
	}
	if err := insert("mql", "default"); err != nil {
		t.Fatal(err)
	}
	port, err := localsvc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	_, dialErr := warehouse.Open(ctx, warehouse.Config{Addr: fmt.Sprintf("127.0.0.1:%d", port), Database: "x", DialTimeout: time.Second})

	f := func(name string, err error, want bool) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: no error", name)
		}
		if got := warehouse.Refused(err); got != want {
			t.Errorf("%s: Refused(%v) = %v, want %v", name, err, got, want)
		}
	}
	f("a row a table expression throws on", insert("mql", "poison"), true)
	f("a table that does not exist", insert("no_such_table", "default"), false)
	f("ClickHouse not listening", dialErr, false)
	f("context cancelled", context.Canceled, false)
	f("too many partitions in one INSERT (24+)", fmt.Errorf("inserting: %w", &clickhouse.Exception{Code: 252,
		Message: "Too many partitions for single INSERT block (more than 100). The limit is controlled by 'max_partitions_per_insert_block' setting."}), true)
	f("too many parts: back-pressure", &clickhouse.Exception{Code: 252,
		Message: "Too many parts (300 with average size of 1.00 MiB) in table 'leadstream.events'. Merges are processing significantly slower than inserts"}, false)
	f("memory limit", &clickhouse.Exception{Code: 241, Message: "Memory limit (total) exceeded"}, false)
	f("a connection dropped mid-insert", &clickhouse.Exception{Code: 32, Message: "Attempt to read after eof"}, false)
	f("a failed disk write", &clickhouse.Exception{Code: 75, Message: "Cannot write to file"}, false)
	// Not about the rows: were they judged refused, the sink would dead-letter
	// a whole healthy batch row by row and commit it past ClickHouse.
	f("a filesystem error inside the server", &clickhouse.Exception{Code: 1001,
		Message: "std::exception. Code: 1001, type: std::__1::__fs::filesystem::filesystem_error, e.what() = filesystem error: in create_directories: No space left on device"}, false)
	f("an unknown server exception", &clickhouse.Exception{Code: 1002, Message: "Unknown exception"}, false)
	f("a value out of the type's range (24+)", &clickhouse.Exception{Code: 321, Message: "Value is out of range of data type"}, true)
}
