package sink

import "errors"

var (
	// ErrAlreadyRun means Run was called more than once on one Sink.
	ErrAlreadyRun = errors.New("sink: Run called twice")
	// ErrInvalidMQL means an MQL record lacks mql_id, lead_id or model.
	ErrInvalidMQL = errors.New("invalid mql record")
)
