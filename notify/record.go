package notify

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/leadstream/leadstream/event"
)

// record is one MQL or MQA record to deliver, decoded from its topic.
type record struct {
	Kind      string // KindMQL or KindMQA
	ID        string // mql_id or mqa_id: the idempotency key
	Subject   string // lead_id or account_id
	Model     string
	Score     float64
	Threshold float64
	CrossedAt time.Time
	Trigger   string
	Reasons   []event.Reason
	Engaged   int               // mqa: engaged_members
	Members   []json.RawMessage // mqa: top_members, as published
	Raw       json.RawMessage   // the record as published
}

// wire is both records' JSON form (mql: leadstream.mql; mqa: leadstream.mqa).
type wire struct {
	MQLID          string            `json:"mql_id"`
	LeadID         string            `json:"lead_id"`
	MQAID          string            `json:"mqa_id"`
	AccountID      string            `json:"account_id"`
	Model          string            `json:"model"`
	Score          float64           `json:"score"`
	Threshold      float64           `json:"threshold"`
	CrossedAt      time.Time         `json:"crossed_at"`
	TriggerEventID string            `json:"trigger_event_id"`
	Reasons        []event.Reason    `json:"reasons"`
	EngagedMembers int               `json:"engaged_members"`
	TopMembers     []json.RawMessage `json:"top_members"`
}

// decodeRecord reads a record of kind; an error means it can never be
// delivered (it is dead-lettered).
func decodeRecord(kind string, value []byte) (*record, error) {
	var w wire
	if err := json.Unmarshal(value, &w); err != nil {
		return nil, fmt.Errorf("undecodable %s record: %v", kind, err)
	}
	r := &record{Kind: kind, Model: w.Model, Score: w.Score, Threshold: w.Threshold, CrossedAt: w.CrossedAt,
		Trigger: w.TriggerEventID, Reasons: w.Reasons, Raw: json.RawMessage(value)}
	switch kind {
	case KindMQL:
		r.ID, r.Subject = w.MQLID, w.LeadID
	case KindMQA:
		r.ID, r.Subject, r.Engaged, r.Members = w.MQAID, w.AccountID, w.EngagedMembers, w.TopMembers
	default:
		return nil, fmt.Errorf("BUG: record kind %q", kind)
	}
	if r.ID == "" || r.Subject == "" {
		return nil, fmt.Errorf("%s record without %s_id or its %s", kind, kind, subjectName(kind))
	}
	if !tokenID(r.ID) {
		return nil, fmt.Errorf("%s record whose %s_id is not 1 to 200 printable ASCII characters", kind, kind)
	}
	return r, nil
}

// tokenID reports whether an id can travel in a header as it is.
func tokenID(id string) bool {
	if len(id) > 200 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

func subjectName(kind string) string {
	if kind == KindMQA {
		return "account_id"
	}
	return "lead_id"
}

// webhookBody is the body of a webhook delivery: the record as published,
// with its kind and id. It is the same for every attempt.
func (r *record) webhookBody() []byte {
	b, err := json.Marshal(struct {
		Kind   string          `json:"kind"`
		ID     string          `json:"id"`
		Record json.RawMessage `json:"record"`
	}{r.Kind, r.ID, r.Raw})
	if err != nil {
		panic("BUG: encoding a webhook body: " + err.Error())
	}
	return b
}

// maxReasons is how many reasons a message lists.
const maxReasons = 5

// title is a one-line summary: "MQL: lead-42 scored 105 (threshold 100, model default)".
func (r *record) title() string {
	what := "lead"
	if r.Kind == KindMQA {
		what = "account"
	}
	return fmt.Sprintf("%s: %s %s scored %s (threshold %s, model %s)", strings.ToUpper(r.Kind), what, oneLine(r.Subject), num(r.Score), num(r.Threshold), oneLine(r.Model))
}

// oneLine is s with its control characters (line breaks above all) as
// spaces: ids come from visitors (a lead id is any userId a page sent) and
// must not forge lines of a message.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029 {
			return ' '
		}
		return r
	}, s)
}

// text is the message of a Slack or e-mail delivery: the summary, the top
// reasons, and what triggered it.
func (r *record) text() string {
	var b strings.Builder
	b.WriteString(r.title())
	b.WriteString("\nTop reasons:")
	reasons := append([]event.Reason(nil), r.Reasons...)
	event.SortReasons(reasons)
	for i, x := range reasons {
		if i == maxReasons {
			fmt.Fprintf(&b, "\n  … and %d more", len(reasons)-maxReasons)
			break
		}
		sign := "+"
		if x.Points < 0 {
			sign = ""
		}
		fmt.Fprintf(&b, "\n  %s %s%s", oneLine(x.Rule), sign, num(x.Points))
	}
	if len(reasons) == 0 {
		b.WriteString(" none listed")
	}
	if r.Kind == KindMQA {
		fmt.Fprintf(&b, "\nEngaged members: %d", r.Engaged)
		if len(r.Members) > 0 {
			b.WriteString("\nTop members:")
			for i, m := range r.Members {
				if i == maxReasons {
					break
				}
				fmt.Fprintf(&b, "\n  %s", oneLine(memberText(m)))
			}
		}
	}
	fmt.Fprintf(&b, "\nCrossed at %s (event %s)\nId: %s", r.CrossedAt.UTC().Format(time.RFC3339), oneLine(r.Trigger), oneLine(r.ID))
	return b.String()
}

// memberText shows one of an MQA's top members: "lead_id (points)" when it
// has those fields, else its JSON.
func memberText(m json.RawMessage) string {
	var v struct {
		LeadID string   `json:"lead_id"`
		Score  *float64 `json:"score"`
		Points *float64 `json:"points"`
	}
	if json.Unmarshal(m, &v) == nil && v.LeadID != "" {
		switch {
		case v.Score != nil:
			return fmt.Sprintf("%s (%s)", v.LeadID, num(*v.Score))
		case v.Points != nil:
			return fmt.Sprintf("%s (%s)", v.LeadID, num(*v.Points))
		}
		return v.LeadID
	}
	return string(m)
}

// num formats a score: whole numbers without decimals, others with one.
func num(x float64) string {
	if x == float64(int64(x)) {
		return fmt.Sprintf("%d", int64(x))
	}
	return fmt.Sprintf("%.1f", x)
}

// slackEscape escapes what Slack reads as markup in a message's text
// (<!channel>, <https://…|label>): its documented &, < and >.
var slackEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// slackBody is a Slack-compatible incoming-webhook body.
func (r *record) slackBody() []byte {
	b, err := json.Marshal(struct {
		Text string `json:"text"`
	}{slackEscape.Replace(r.text())})
	if err != nil {
		panic("BUG: encoding a slack body: " + err.Error())
	}
	return b
}
