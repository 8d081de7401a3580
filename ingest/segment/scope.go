package segment

import (
	"fmt"
	"time"

	"github.com/leadstream/leadstream/event"
)

// What a browser write key may not send, and why (README "Security"): write
// keys are public, so anything they can send, anyone can.
//
//   - "Deal Won" carries revenue: a page could forge ROMI and score +50.
//   - "Email Opened" and "Email Link Clicked": email engagement from browsers
//     comes only through the signed pixel and links (GET /o/, /c/); a page
//     could otherwise score any lead as engaged.
//   - alias merges any id into any lead: a page could take over another
//     visitor's or lead's history.
//   - events dated further back than Request.MaxEventAge: caps count hits per
//     window of event time, so backdating would open past windows again.

// browserScope refuses what only a server write key may send.
func browserScope(e *event.Event, at loc) error {
	switch e.Type {
	case event.DealWon:
		return errScope(at.field(".event"), "%q needs a server write key (revenue cannot come from a public key)", e.Track)
	case event.EmailOpen, event.EmailClick:
		return errScope(at.field(".event"), "%q needs a server write key: email opens and clicks from browsers come only through the signed pixel and links", e.Track)
	case event.Alias:
		return errScope(at.field(".type"), "alias needs a server write key")
	}
	return nil
}

// errTooOld is the error of a browser key's message whose event time is age
// before its receipt, over maxAge.
func errTooOld(m *message, at loc, age, maxAge time.Duration) error {
	field := ".timestamp"
	if m.Timestamp == "" {
		field = ".originalTimestamp"
	}
	return errScope(at.field(field), "puts the event %s before its receipt (after the clock-skew correction), over collector.max-event-age (%s) for a browser write key; older events need a server write key",
		age.Round(time.Second), maxAge)
}

func errScope(field, format string, args ...any) error {
	return &Error{Field: field, Msg: fmt.Sprintf(format, args...), Scope: true}
}
