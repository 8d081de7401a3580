package warehouse

import "errors"

var (
	// ErrNoAddr means clickhouse.addr is empty.
	ErrNoAddr = errors.New("clickhouse.addr is required")
	// ErrBadDatabase means the database name is not a plain identifier
	// ([A-Za-z_][A-Za-z0-9_]*); it is spliced into DDL, so nothing else is allowed.
	ErrBadDatabase = errors.New("clickhouse database name must match [A-Za-z_][A-Za-z0-9_]*")
	// ErrBadCosts means a costs CSV file has bad lines; the error is a
	// *CostsError that names each line and field. Nothing was imported.
	ErrBadCosts = errors.New("bad costs file")
)
