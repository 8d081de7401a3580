package warehouse

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Retention: the tables partitioned by month (toYYYYMM of an event time)
// lose whole months with ALTER TABLE … DROP PARTITION, which frees the disk
// at once (no mutation) on 18.16 and 24+ alike. identity_links and
// campaign_costs are not partitioned by time and are kept.

// MonthlyTables are the tables partitioned by toYYYYMM, with the column.
var MonthlyTables = []struct{ Table, Column string }{
	{TableEvents, "event_time"},
	{TableMQL, "crossed_at"},
	{TableAccountMembers, "joined_at"},
	{TableMQA, "crossed_at"},
	{TableNotifications, "attempted_at"},
}

// zoneSlack is how far the server's time zone can put a month's rows from
// the UTC month: toYYYYMM uses the server's zone (UTC-12 … UTC+14).
const zoneSlack = 14 * time.Hour

// Partition is one monthly partition of a table.
type Partition struct {
	Table string
	Month string // YYYYMM, as system.parts names it
	Rows  uint64
	Bytes uint64
}

// ExpiredPartitions lists the monthly partitions whose whole month is older
// than before, in any time zone, oldest first.
func ExpiredPartitions(ctx context.Context, conn driver.Conn, database string, before time.Time) ([]Partition, error) {
	if err := CheckDatabase(database); err != nil {
		return nil, err
	}
	tables := make([]string, len(MonthlyTables))
	for i, t := range MonthlyTables {
		tables[i] = t.Table
	}
	rows, err := conn.Query(ctx, `SELECT table, partition, sum(rows), sum(bytes_on_disk) FROM system.parts
		WHERE database = ? AND table IN ? AND active GROUP BY table, partition ORDER BY partition, table`,
		database, idSet(tables))
	if err != nil {
		return nil, fmt.Errorf("listing the partitions of %s: %w", database, err)
	}
	defer rows.Close()
	var out []Partition
	for rows.Next() {
		var p Partition
		if err := rows.Scan(&p.Table, &p.Month, &p.Rows, &p.Bytes); err != nil {
			return nil, fmt.Errorf("listing the partitions of %s: %w", database, err)
		}
		end, err := monthEnd(p.Month)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", database, p.Table, err)
		}
		if !end.Add(zoneSlack).After(before) {
			out = append(out, p)
		}
	}
	return out, rows.Err()
}

// monthEnd is the end (the next month's first instant, UTC) of YYYYMM.
func monthEnd(yyyymm string) (time.Time, error) {
	n, err := strconv.Atoi(yyyymm)
	if err != nil || len(yyyymm) != 6 || n%100 < 1 || n%100 > 12 {
		return time.Time{}, fmt.Errorf("partition %q is not a month (YYYYMM)", yyyymm)
	}
	return time.Date(n/100, time.Month(n%100)+1, 1, 0, 0, 0, 0, time.UTC), nil
}

// DropPartition drops one monthly partition (ExpiredPartitions).
func DropPartition(ctx context.Context, conn driver.Conn, database string, p Partition) error {
	if err := CheckDatabase(database); err != nil {
		return err
	}
	if _, err := monthEnd(p.Month); err != nil {
		return err
	}
	known := false
	for _, t := range MonthlyTables {
		known = known || t.Table == p.Table
	}
	if !known {
		return fmt.Errorf("%s is not a table partitioned by month", p.Table)
	}
	if err := conn.Exec(ctx, "ALTER TABLE "+database+"."+p.Table+" DROP PARTITION "+p.Month); err != nil {
		return fmt.Errorf("dropping partition %s of %s.%s: %w", p.Month, database, p.Table, err)
	}
	return nil
}
