package warehouse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Erasure (GDPR art. 17) on the ClickHouse side: finding what belongs to a
// lead, and deleting it. ALTER TABLE … DELETE is a mutation: ClickHouse
// rewrites the parts holding matching rows in the background (18.16 and
// 24+ alike); PendingMutations tells when it is done.

// maxLinkHops bounds how far Linked follows aliases (a lead merged into a
// lead merged into the lead …), as the scoring state does.
const maxLinkHops = 8

// maxIDBytes bounds the ids one statement names, counted as they are
// spliced into its text (quoted, escaped, separated), keeping it well under
// ClickHouse's max_query_size (256 KiB by default) whatever the ids: up to
// 256 bytes each, and a quote, a backslash or a NUL doubles when escaped. A
// statement that names its list n times gets maxIDBytes/n per list.
const maxIDBytes = 64 << 10

// idChunks splits ids into runs of at most budget bytes each as spliced
// into a query (idBytes); a run holds at least one id.
func idChunks(ids []string, budget int) [][]string {
	var out [][]string
	lo, size := 0, 0
	for i, id := range ids {
		n := idBytes(id)
		if i > lo && size+n > budget {
			out = append(out, ids[lo:i])
			lo, size = i, 0
		}
		size += n
	}
	if lo < len(ids) {
		out = append(out, ids[lo:])
	}
	return out
}

// idBytes is the size of id in a query's text: quoted, with \, ' and NUL
// escaped (as the driver binds a string), and the ", " after it.
func idBytes(id string) int {
	n := len(id) + 4
	for i := 0; i < len(id); i++ {
		switch id[i] {
		case '\\', '\'', 0:
			n++
		}
	}
	return n
}

// queryError is the error of a query that names ids without what
// ClickHouse said: its message may quote the query, and so the ids
// (personal data, which must not reach a log). The code and name of the
// exception are kept.
func queryError(err error) error {
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		return fmt.Errorf("clickhouse exception %d (%s), its message left out as it may quote the ids", ex.Code, ex.Name)
	}
	return err
}

// Linked returns what an erasure of lead covers: leads, the lead and every
// lead merged into it by alias (previousId → userId, transitively), and
// anons, every anonymous id linked to one of them (identity_links: visitors
// that identified, alias previous ids). Ids are returned sorted.
func Linked(ctx context.Context, conn driver.Conn, database, lead string) (leads, anons []string, err error) {
	if err := CheckDatabase(database); err != nil {
		return nil, nil, err
	}
	seen := map[string]bool{lead: true}
	leads = []string{lead}
	for hop, frontier := 0, []string{lead}; len(frontier) > 0 && hop < maxLinkHops; hop++ {
		prev, err := distinct(ctx, conn, "SELECT DISTINCT previous_id FROM "+database+".events WHERE type = 'alias' AND previous_id != '' AND lead_id IN ?", frontier)
		if err != nil {
			return nil, nil, fmt.Errorf("finding the leads merged into a lead: %w", err)
		}
		frontier = frontier[:0:0]
		for _, p := range prev {
			if !seen[p] {
				seen[p] = true
				leads = append(leads, p)
				frontier = append(frontier, p)
			}
		}
	}
	if anons, err = Visitors(ctx, conn, database, leads); err != nil {
		return nil, nil, err
	}
	slices.Sort(leads)
	return leads, anons, nil
}

// Visitors returns the anonymous ids linked to leads in identity_links
// (kept by retention), sorted. A lead merged into one of them by alias is
// among them too (its id is linked as an anonymous id), but so may be any
// id a browser identified: only the lead's state (its Into) proves a merge
// (package erasure).
func Visitors(ctx context.Context, conn driver.Conn, database string, leads []string) ([]string, error) {
	if err := CheckDatabase(database); err != nil {
		return nil, err
	}
	anons, err := distinct(ctx, conn, "SELECT DISTINCT anonymous_id FROM "+database+".identity_links WHERE lead_id IN ?", leads)
	if err != nil {
		return nil, fmt.Errorf("finding the visitors of a lead: %w", err)
	}
	slices.Sort(anons)
	return slices.Compact(anons), nil
}

// idSet is ids as the right side of IN: ('a', 'b'), each quoted and escaped
// by the driver (no server-side parameters on ClickHouse 18.16).
func idSet(ids []string) clickhouse.GroupSet {
	v := make([]any, len(ids))
	for i, id := range ids {
		v[i] = id
	}
	return clickhouse.GroupSet{Value: v}
}

// distinct runs q (one String column, one "IN ?") for ids, chunk by chunk.
func distinct(ctx context.Context, conn driver.Conn, q string, ids []string) ([]string, error) {
	var out []string
	for _, chunk := range idChunks(ids, maxIDBytes) {
		rows, err := conn.Query(ctx, q, idSet(chunk))
		if err != nil {
			return nil, queryError(err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				rows.Close()
				return nil, queryError(err)
			}
			out = append(out, s)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, queryError(err)
		}
	}
	return out, nil
}

// ErasedTables are the tables EraseRows changes.
var ErasedTables = []string{TableEvents, TableIdentityLinks, TableMQL, TableAccountMembers, TableMQA, TableNotifications}

// Accounts returns the accounts the leads and the anonymous ids were ever
// recorded in (account_members), sorted: by the lead id of a member's row,
// and by its anonymous id — a visitor's group call is recorded with the
// visitor's id and no lead, yet its account holds an entry of the lead the
// visitor became (scoring: a visitor's group call counts for its lead).
// Each list is queried chunk by chunk (idChunks); errors leave the ids out
// (queryError).
func Accounts(ctx context.Context, conn driver.Conn, database string, leads, anons []string) ([]string, error) {
	if err := CheckDatabase(database); err != nil {
		return nil, err
	}
	out, err := distinct(ctx, conn, "SELECT DISTINCT account_id FROM "+database+"."+TableAccountMembers+" WHERE lead_id IN ?", leads)
	if err != nil {
		return nil, fmt.Errorf("finding the accounts of a lead: %w", err)
	}
	byVisitor, err := distinct(ctx, conn, "SELECT DISTINCT account_id FROM "+database+"."+TableAccountMembers+" WHERE anonymous_id IN ?", anons)
	if err != nil {
		return nil, fmt.Errorf("finding the accounts of a lead's visitors: %w", err)
	}
	out = append(out, byVisitor...)
	slices.Sort(out)
	return slices.Compact(out), nil
}

// EraseRows submits the mutations that delete the rows of leads and anons:
// EraseHistory's, then EraseLinks'. It returns once ClickHouse accepted
// them; PendingMutations tells when they are done.
func EraseRows(ctx context.Context, conn driver.Conn, database string, leads, anons []string) error {
	if err := EraseHistory(ctx, conn, database, leads, anons); err != nil {
		return err
	}
	return EraseLinks(ctx, conn, database, leads, anons)
}

// EraseHistory submits the mutations that delete what leads and anons did,
// none of which an erasure reads to find whom it covers (but the alias
// events, which identity_links and the leads' states in Redis stand in
// for):
//
//   - events: every event of one of the leads, and every anonymous event
//     (no lead id) of one of the anonymous ids, and the alias events that
//     merged one of the leads into another lead (previous_id: the merge
//     whose identity link goes too). An event of another lead on a shared
//     browser (its anonymous id, that lead's id) stays theirs.
//   - mql: the crossings of the leads.
//   - notifications: the notifier's delivery attempts of the leads' MQL
//     records (subject_id = the lead id; those of MQA records name an
//     account and stay).
//   - mqa: the account crossings stay (they are the account's), but the
//     leads are removed from their top_members (ALTER TABLE … UPDATE).
//
// It returns once ClickHouse accepted them.
func EraseHistory(ctx context.Context, conn driver.Conn, database string, leads, anons []string) error {
	if err := CheckDatabase(database); err != nil {
		return err
	}
	steps := []eraseStep{
		{TableEvents, "lead_id IN ?", leads},
		{TableEvents, "lead_id = '' AND anonymous_id IN ?", anons},
		{TableEvents, "type = 'alias' AND previous_id IN ?", leads},
		{TableMQL, "lead_id IN ?", leads},
		{TableNotifications, "kind != 'mqa' AND subject_id IN ?", leads},
	}
	if err := deleteRows(ctx, conn, database, steps); err != nil {
		return err
	}
	// Both columns of the Nested in one mutation, so they keep one length;
	// points first, filtered by the lead ids before they change. The
	// statement names the ids three times.
	for _, ids := range idChunks(leads, maxIDBytes/3) {
		q := "ALTER TABLE " + database + "." + TableMQA + " UPDATE " +
			"`top_members.points` = arrayFilter((p, l) -> NOT has(?, l), `top_members.points`, `top_members.lead_id`), " +
			"`top_members.lead_id` = arrayFilter(l -> NOT has(?, l), `top_members.lead_id`) " +
			"WHERE hasAny(`top_members.lead_id`, ?)"
		if err := conn.Exec(ctx, q, ids, ids, ids); err != nil {
			return fmt.Errorf("removing erased leads from %s.%s: %w", database, TableMQA, queryError(err))
		}
	}
	return nil
}

// EraseLinks submits the mutations that delete the rows an erasure finds
// its subjects by (Visitors, Accounts), so an erasure runs them last: one
// that failed before them finds the same leads, visitors and accounts when
// it runs again.
//
//   - account_members: the memberships of the leads, and those of the
//     anonymous ids recorded without a lead.
//   - identity_links: the links to the leads, and the links of the leads'
//     own ids (a lead merged into another by alias).
//
// It returns once ClickHouse accepted them.
func EraseLinks(ctx context.Context, conn driver.Conn, database string, leads, anons []string) error {
	if err := CheckDatabase(database); err != nil {
		return err
	}
	return deleteRows(ctx, conn, database, []eraseStep{
		{TableAccountMembers, "lead_id IN ?", leads},
		{TableAccountMembers, "lead_id = '' AND anonymous_id IN ?", anons},
		{TableIdentityLinks, "lead_id IN ?", leads},
		{TableIdentityLinks, "anonymous_id IN ?", leads},
	})
}

// eraseStep is one ALTER TABLE … DELETE WHERE where ("IN ?" naming ids).
type eraseStep struct {
	table, where string
	ids          []string
}

// deleteRows submits steps in order, each chunk by chunk (idChunks).
func deleteRows(ctx context.Context, conn driver.Conn, database string, steps []eraseStep) error {
	for _, s := range steps {
		for _, chunk := range idChunks(s.ids, maxIDBytes) {
			q := "ALTER TABLE " + database + "." + s.table + " DELETE WHERE " + s.where
			if err := conn.Exec(ctx, q, idSet(chunk)); err != nil {
				return fmt.Errorf("deleting rows of %s.%s: %w", database, s.table, queryError(err))
			}
		}
	}
	return nil
}

// PendingMutations is how many mutations of ErasedTables ClickHouse has not
// finished.
func PendingMutations(ctx context.Context, conn driver.Conn, database string) (uint64, error) {
	var n uint64
	err := conn.QueryRow(ctx, "SELECT count() FROM system.mutations WHERE database = ? AND table IN ? AND is_done = 0", database, idSet(ErasedTables)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("reading the mutations of %s: %w", database, err)
	}
	return n, nil
}

// WaitMutations waits until no mutation of ErasedTables is pending, or for
// at most wait; it reports whether they are done.
func WaitMutations(ctx context.Context, conn driver.Conn, database string, wait time.Duration) (bool, error) {
	deadline := time.Now().Add(wait)
	for {
		n, err := PendingMutations(ctx, conn, database)
		if err != nil || n == 0 {
			return n == 0 && err == nil, err
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
