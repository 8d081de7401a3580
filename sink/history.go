package sink

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/leadstream/leadstream/event"
)

// History streams every stored event that can score (bot flag unset) to fn,
// deduplicated (FINAL) and in event-time order: the input of a rescore.
func History(ctx context.Context, conn driver.Conn, database string, fn func(*event.Event) error) error {
	if !identifier.MatchString(database) {
		return fmt.Errorf("%w, got %q", ErrBadDatabase, database)
	}
	rows, err := conn.Query(ctx, fmt.Sprintf(`SELECT event_id, type, event_time_ms, anonymous_id, lead_id, previous_id,
	campaign, url, path, track, properties, traits
FROM %s.events FINAL
WHERE bot = 0
ORDER BY event_time_ms, event_id`, database))
	if err != nil {
		return fmt.Errorf("reading event history: %w", err)
	}
	defer rows.Close()
	var (
		e                  event.Event
		typ, props, traits string
		ms                 uint64
	)
	for rows.Next() {
		e = event.Event{}
		if err := rows.Scan(&e.ID, &typ, &ms, &e.AnonymousID, &e.LeadID, &e.PreviousID,
			&e.Campaign, &e.URL, &e.Path, &e.Track, &props, &traits); err != nil {
			return fmt.Errorf("reading event history: %w", err)
		}
		e.Type = event.Type(typ)
		e.EventTime = time.UnixMilli(int64(ms)).UTC()
		e.ReceivedAt = e.EventTime
		if props != "" {
			e.Properties = []byte(props)
		}
		if traits != "" {
			e.Traits = []byte(traits)
		}
		if err := fn(&e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading event history: %w", err)
	}
	return nil
}
