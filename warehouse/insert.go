package warehouse

import (
	"context"
	"fmt"
	"runtime"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Column is one column of an insert: its name and its values as a slice of
// a type clickhouse-go appends column-wise without boxing each value.
type Column struct {
	Name   string
	Values any
}

// InsertQuery is the INSERT statement for cols into database.table. The
// column list is always explicit: for a bare "INSERT INTO t", ClickHouse
// 18.16 tells clickhouse-go of no columns and every row is rejected
// ("expected 0 arguments").
func InsertQuery(database, table string, cols []Column) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	return "INSERT INTO " + database + "." + table + " (" + strings.Join(names, ", ") + ")"
}

// AppendColumns appends one block's columns to batch. It yields to the Go
// scheduler after each column: a block's columns are copies of thousands of
// values, and where the sink shares a process with the collector and
// processors, requests and scoring batches should not queue behind them.
func AppendColumns(batch driver.Batch, table string, cols []Column) error {
	for i, c := range cols {
		if err := batch.Column(i).Append(c.Values); err != nil {
			return fmt.Errorf("appending column %s of %s batch: %w", c.Name, table, err)
		}
		runtime.Gosched()
	}
	return nil
}

// Insert sends n rows held by cols into database.table in one INSERT.
func Insert(ctx context.Context, conn driver.Conn, database, table string, n int, cols []Column) error {
	batch, err := conn.PrepareBatch(ctx, InsertQuery(database, table, cols))
	if err != nil {
		return fmt.Errorf("preparing insert into %s.%s: %w", database, table, err)
	}
	defer batch.Close()
	if err := AppendColumns(batch, table, cols); err != nil {
		return err
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("inserting %s batch of %d rows: %w", table, n, err)
	}
	return nil
}

// Pluck returns one field of every element of src: a column of a row slice.
func Pluck[S, T any](src []S, f func(*S) T) []T {
	out := make([]T, len(src))
	for i := range src {
		out[i] = f(&src[i])
	}
	return out
}
