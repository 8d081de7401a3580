package sink

import "errors"

var (
	// ErrAlreadyRun means Run was called more than once on one Sink.
	ErrAlreadyRun = errors.New("sink: Run called twice")
	// ErrInvalidMQL means an MQL record lacks mql_id, lead_id or model.
	ErrInvalidMQL = errors.New("invalid mql record")
	// ErrInvalidMQA means an MQA record lacks mqa_id, account_id or model.
	ErrInvalidMQA = errors.New("invalid mqa record")
)
