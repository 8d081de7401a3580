package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/warehouse"
)

// member is one account_members row: a group call (or an identify's work
// e-mail domain) naming a person's account.
type member struct {
	accountID, leadID, anonymousID, source string
	joinedAt                               time.Time
	eventID                                string
	rec                                    int // batch index of its event's record
}

// Membership sources in account_members.source.
const (
	sourceGroup       = "group"
	sourceEmailDomain = "email_domain"
)

// memberSet collects a batch's account memberships.
type memberSet struct {
	fromDomain bool
	out        []member
}

func (ms *memberSet) reset() {
	clear(ms.out)
	ms.out = ms.out[:0]
}

// add adds the memberships of evs; recs, when not nil, holds the batch
// index of each event's record (else member.rec is 0).
func (ms *memberSet) add(evs []event.Event, recs []int) {
	for i := range evs {
		e := &evs[i]
		if e.Bot {
			continue // not scored, so no membership either
		}
		rec := 0
		if recs != nil {
			rec = recs[i]
		}
		switch {
		case e.Type == event.Group && e.GroupID != "":
			ms.out = append(ms.out, member{accountID: e.GroupID, leadID: e.LeadID, anonymousID: e.AnonymousID,
				source: sourceGroup, joinedAt: e.EventTime, eventID: e.ID, rec: rec})
		case ms.fromDomain && e.Type == event.Identify && len(e.Traits) > 0:
			var t struct {
				Email any `json:"email"`
			}
			if json.Unmarshal(e.Traits, &t) != nil {
				continue
			}
			email, _ := t.Email.(string)
			if d := scoring.EmailDomainAccount(email); d != "" {
				ms.out = append(ms.out, member{accountID: d, leadID: e.LeadID, anonymousID: e.AnonymousID,
					source: sourceEmailDomain, joinedAt: e.EventTime, eventID: e.ID, rec: rec})
			}
		}
	}
}

// insertMembers inserts ms, at most maxMonths months per INSERT.
func (w *writer) insertMembers(ctx context.Context, ms []member) error {
	return byMonths(ms, func(m *member) time.Time { return m.joinedAt }, func(ms []member) error { return w.insertMembersOnce(ctx, ms) })
}

func (w *writer) insertMembersOnce(ctx context.Context, ms []member) error {
	if len(ms) == 0 {
		return nil
	}
	return w.insert(ctx, warehouse.TableAccountMembers, len(ms), []warehouse.Column{
		{Name: "account_id", Values: warehouse.Pluck(ms, func(m *member) string { return m.accountID })},
		{Name: "lead_id", Values: warehouse.Pluck(ms, func(m *member) string { return m.leadID })},
		{Name: "anonymous_id", Values: warehouse.Pluck(ms, func(m *member) string { return m.anonymousID })},
		{Name: "source", Values: warehouse.Pluck(ms, func(m *member) string { return m.source })},
		{Name: "joined_at", Values: warehouse.Pluck(ms, func(m *member) time.Time { return m.joinedAt })},
		{Name: "joined_at_ms", Values: warehouse.Pluck(ms, func(m *member) uint64 { return warehouse.Millis(m.joinedAt) })},
		{Name: "event_id", Values: warehouse.Pluck(ms, func(m *member) string { return m.eventID })},
	})
}

// insertMQAs inserts ms, at most maxMonths months per INSERT.
func (w *writer) insertMQAs(ctx context.Context, ms []event.MQA) error {
	return byMonths(ms, func(m *event.MQA) time.Time { return m.CrossedAt }, func(ms []event.MQA) error { return w.insertMQAsOnce(ctx, ms) })
}

func (w *writer) insertMQAsOnce(ctx context.Context, ms []event.MQA) error {
	if len(ms) == 0 {
		return nil
	}
	return w.insert(ctx, warehouse.TableMQA, len(ms), []warehouse.Column{
		{Name: "mqa_id", Values: warehouse.Pluck(ms, func(m *event.MQA) string { return m.MQAID })},
		{Name: "account_id", Values: warehouse.Pluck(ms, func(m *event.MQA) string { return m.AccountID })},
		{Name: "model", Values: warehouse.Pluck(ms, func(m *event.MQA) string { return m.Model })},
		{Name: "score", Values: warehouse.Pluck(ms, func(m *event.MQA) float64 { return m.Score })},
		{Name: "threshold", Values: warehouse.Pluck(ms, func(m *event.MQA) float64 { return m.Threshold })},
		{Name: "crossed_at", Values: warehouse.Pluck(ms, func(m *event.MQA) time.Time { return m.CrossedAt })},
		{Name: "crossed_at_ms", Values: warehouse.Pluck(ms, func(m *event.MQA) uint64 { return uint64(m.CrossedAt.UnixMilli()) })},
		{Name: "trigger_event_id", Values: warehouse.Pluck(ms, func(m *event.MQA) string { return m.TriggerEventID })},
		{Name: "engaged_members", Values: warehouse.Pluck(ms, func(m *event.MQA) uint32 { return uint32(max(m.EngagedMembers, 0)) })},
		{Name: "reasons.rule", Values: warehouse.Pluck(ms, func(m *event.MQA) []string { return warehouse.Pluck(m.Reasons, reasonRule) })},
		{Name: "reasons.points", Values: warehouse.Pluck(ms, func(m *event.MQA) []float64 { return warehouse.Pluck(m.Reasons, reasonPoints) })},
		{Name: "top_members.lead_id", Values: warehouse.Pluck(ms, func(m *event.MQA) []string {
			return warehouse.Pluck(m.TopMembers, func(x *event.Member) string { return x.LeadID })
		})},
		{Name: "top_members.points", Values: warehouse.Pluck(ms, func(m *event.MQA) []float64 {
			return warehouse.Pluck(m.TopMembers, func(x *event.Member) float64 { return x.Points })
		})},
	})
}

// decodeMQA decodes and checks one record of the mqa topic.
func decodeMQA(b []byte, m *event.MQA) error {
	*m = event.MQA{}
	if err := json.Unmarshal(b, m); err != nil {
		return fmt.Errorf("decoding mqa: %w", err)
	}
	switch {
	case m.MQAID == "":
		return fmt.Errorf("%w: mqa_id is required", ErrInvalidMQA)
	case m.AccountID == "":
		return fmt.Errorf("%w: account_id is required", ErrInvalidMQA)
	case m.Model == "":
		return fmt.Errorf("%w: model is required", ErrInvalidMQA)
	}
	return warehouse.CheckTime("crossed_at", m.CrossedAt)
}
