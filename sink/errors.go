package sink

import "errors"

var (
	// ErrNoAddr means clickhouse.addr is empty.
	ErrNoAddr = errors.New("clickhouse.addr is required")
	// ErrBadDatabase means the database name is not a plain identifier
	// ([A-Za-z_][A-Za-z0-9_]*); it is spliced into DDL, so nothing else is allowed.
	ErrBadDatabase = errors.New("clickhouse database name must match [A-Za-z_][A-Za-z0-9_]*")
	// ErrAlreadyRun means Run was called more than once on one Sink.
	ErrAlreadyRun = errors.New("sink: Run called twice")
	// ErrUnstorable means a decoded record holds a value ClickHouse cannot
	// store (a time outside DateTime's range, revenue beyond Decimal(18,4));
	// such records go to the dead-letter topic.
	ErrUnstorable = errors.New("value cannot be stored in clickhouse")
	// ErrInvalidMQL means an MQL record lacks mql_id, lead_id or model.
	ErrInvalidMQL = errors.New("invalid mql record")
	// ErrBadCosts means a costs CSV file has bad lines; the error is a
	// *CostsError that names each line and field. Nothing was imported.
	ErrBadCosts = errors.New("bad costs file")
)
