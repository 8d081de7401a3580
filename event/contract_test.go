package event

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The topic forms are a public contract (README "Kafka topics", DESIGN.md):
// these tests pin them as `leadstream dev` really produced them, one record
// per event type, and hold the README's examples to the fields the code
// writes.

func TestTopicFormPerEventType(t *testing.T) {
	at := time.Date(2026, 11, 22, 16, 39, 58, 120_000_000, time.UTC)
	base := func(id string, typ Type) Event {
		return Event{ID: id, Type: typ, EventTime: at, ReceivedAt: at.Add(80 * time.Millisecond),
			WriteKeyID: "wk_e06fecd07308", IP: "127.0.0.0", UserAgent: "curl/7.88.1"}
	}
	cases := []struct {
		e    func() Event
		want string
	}{
		{func() Event {
			e := base("m-page", PageView)
			e.AnonymousID, e.Campaign, e.UTMSource, e.UTMMedium, e.UTMCampaign = "anon-1", "spring", "google", "cpc", "spring"
			e.URL, e.Path, e.Referrer, e.Title = "https://acme.example/pricing?utm_source=google&utm_campaign=spring", "/pricing", "https://www.google.com/", "Pricing"
			e.Properties = json.RawMessage(`{"url": "https://acme.example/pricing?a=1&b=2"}`)
			e.OriginalTimestamp = at.Add(time.Hour - 20*time.Millisecond)
			e.Context = json.RawMessage(`{"locale":"ja-JP"}`)
			return e
		}, `{"event_id":"m-page","type":"page_view","event_time":"2026-11-22T16:39:58.12Z","received_at":"2026-11-22T16:39:58.2Z","anonymous_id":"anon-1","write_key_id":"wk_e06fecd07308","campaign":"spring","utm_source":"google","utm_medium":"cpc","utm_campaign":"spring","url":"https://acme.example/pricing?utm_source=google\u0026utm_campaign=spring","path":"/pricing","referrer":"https://www.google.com/","title":"Pricing","properties":{"url":"https://acme.example/pricing?a=1\u0026b=2"},"ip":"127.0.0.0","user_agent":"curl/7.88.1","original_timestamp":"2026-11-22T17:39:58.1Z","context":{"locale":"ja-JP"}}`},
		{func() Event {
			e := base("m-ident", Identify)
			e.AnonymousID, e.LeadID = "anon-1", "lead-42"
			e.Traits = json.RawMessage(`{"title":"VP Marketing","employees":500}`)
			return e
		}, `{"event_id":"m-ident","type":"identify","event_time":"2026-11-22T16:39:58.12Z","received_at":"2026-11-22T16:39:58.2Z","anonymous_id":"anon-1","lead_id":"lead-42","write_key_id":"wk_e06fecd07308","traits":{"title":"VP Marketing","employees":500},"ip":"127.0.0.0","user_agent":"curl/7.88.1"}`},
		{func() Event {
			e := base("m-form", FormSubmit)
			e.LeadID, e.Track, e.Properties = "lead-42", "Form Submitted", json.RawMessage(`{"form":"whitepaper"}`)
			return e
		}, `{"event_id":"m-form","type":"form_submit","event_time":"2026-11-22T16:39:58.12Z","received_at":"2026-11-22T16:39:58.2Z","lead_id":"lead-42","write_key_id":"wk_e06fecd07308","track":"Form Submitted","properties":{"form":"whitepaper"},"ip":"127.0.0.0","user_agent":"curl/7.88.1"}`},
		{func() Event { // the pixel: no write key
			e := base("eo-3bc2", EmailOpen)
			e.WriteKeyID, e.LeadID, e.Campaign, e.Track, e.Properties = "", "lead-44", "spring", "Email Opened", json.RawMessage(`{"message_id":"m-1"}`)
			return e
		}, `{"event_id":"eo-3bc2","type":"email_open","event_time":"2026-11-22T16:39:58.12Z","received_at":"2026-11-22T16:39:58.2Z","lead_id":"lead-44","campaign":"spring","track":"Email Opened","properties":{"message_id":"m-1"},"ip":"127.0.0.0","user_agent":"curl/7.88.1"}`},
		{func() Event {
			e := base("ec-20e8", EmailClick)
			e.WriteKeyID, e.LeadID, e.Campaign, e.UTMSource, e.URL, e.Path = "", "lead-44", "spring", "mail", "https://acme.example/pricing?utm_source=mail", "/pricing"
			e.Track, e.Properties = "Email Link Clicked", json.RawMessage(`{"message_id":"m-1","url":"https://acme.example/pricing?utm_source=mail"}`)
			e.Bot, e.BotReason = true, "scanner:burst"
			return e
		}, `{"event_id":"ec-20e8","type":"email_click","event_time":"2026-11-22T16:39:58.12Z","received_at":"2026-11-22T16:39:58.2Z","lead_id":"lead-44","campaign":"spring","utm_source":"mail","url":"https://acme.example/pricing?utm_source=mail","path":"/pricing","track":"Email Link Clicked","properties":{"message_id":"m-1","url":"https://acme.example/pricing?utm_source=mail"},"ip":"127.0.0.0","user_agent":"curl/7.88.1","bot":true,"bot_reason":"scanner:burst"}`},
		{func() Event {
			e := base("m-deal", DealWon)
			e.LeadID, e.Campaign, e.Track = "lead-42", "spring", "Deal Won"
			e.Properties = json.RawMessage(`{"revenue":"$1234.50","currency":"EUR"}`)
			e.Revenue, e.Currency = 1234.5, "EUR"
			return e
		}, `{"event_id":"m-deal","type":"deal_won","event_time":"2026-11-22T16:39:58.12Z","received_at":"2026-11-22T16:39:58.2Z","lead_id":"lead-42","write_key_id":"wk_e06fecd07308","campaign":"spring","track":"Deal Won","properties":{"revenue":"$1234.50","currency":"EUR"},"revenue":1234.5,"currency":"EUR","ip":"127.0.0.0","user_agent":"curl/7.88.1"}`},
		{func() Event {
			e := base("m-custom", Custom)
			e.LeadID, e.Track, e.Properties = "lead-42", "Webinar Attended", json.RawMessage(`{"w":1}`)
			e.Integrations = json.RawMessage(`{"All":false}`)
			return e
		}, `{"event_id":"m-custom","type":"custom","event_time":"2026-11-22T16:39:58.12Z","received_at":"2026-11-22T16:39:58.2Z","lead_id":"lead-42","write_key_id":"wk_e06fecd07308","track":"Webinar Attended","properties":{"w":1},"ip":"127.0.0.0","user_agent":"curl/7.88.1","integrations":{"All":false}}`},
		{func() Event {
			e := base("m-alias", Alias)
			e.LeadID, e.PreviousID = "lead-42", "old-lead"
			return e
		}, `{"event_id":"m-alias","type":"alias","event_time":"2026-11-22T16:39:58.12Z","received_at":"2026-11-22T16:39:58.2Z","lead_id":"lead-42","previous_id":"old-lead","write_key_id":"wk_e06fecd07308","ip":"127.0.0.0","user_agent":"curl/7.88.1"}`},
		{func() Event {
			e := base("m-group", Group)
			e.LeadID, e.GroupID, e.Traits = "lead-42", "acct-7", json.RawMessage(`{"industry":"software"}`)
			return e
		}, `{"event_id":"m-group","type":"group","event_time":"2026-11-22T16:39:58.12Z","received_at":"2026-11-22T16:39:58.2Z","lead_id":"lead-42","group_id":"acct-7","write_key_id":"wk_e06fecd07308","traits":{"industry":"software"},"ip":"127.0.0.0","user_agent":"curl/7.88.1"}`},
	}
	seen := map[Type]bool{}
	for _, c := range cases {
		e := c.e()
		seen[e.Type] = true
		if err := e.Validate(); err != nil {
			t.Fatalf("%s: %v", e.Type, err)
		}
		got, err := Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("%s:\n got %s\nwant %s", e.Type, got, c.want)
		}
		var back Event
		if err := Unmarshal(got, &back); err != nil {
			t.Fatalf("%s: %v", e.Type, err)
		}
		if again, _ := Marshal(&back); string(again) != c.want {
			t.Errorf("%s: round trip changed the record:\n%s", e.Type, again)
		}
	}
	for _, typ := range Types {
		if !seen[typ] {
			t.Errorf("no contract case for type %s", typ)
		}
	}
}

// readmeBlock returns the first ```json block after heading in README.md.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Skipf("README.md: %v", err)
	}
	s := string(b)
	i := strings.Index(s, heading)
	if i < 0 {
		t.Fatalf("README has no %q", heading)
	}
	s = s[i:]
	i = strings.Index(s, "```json\n")
	j := strings.Index(s[i+8:], "```")
	if i < 0 || j < 0 {
		t.Fatalf("README: no json block after %q", heading)
	}
	return s[i+8 : i+8+j]
}

func keysOf(t *testing.T, b []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// The README's events example names every field Fields writes, in the
// order AppendJSON writes them.
func TestREADMEEventsExampleListsEveryField(t *testing.T) {
	block := readmeBlock(t, "### `leadstream.events`")
	// The example has comments and "…": take the keys at depth 1.
	key := regexp.MustCompile(`^"([a-z_]+)":`)
	var doc []string
	depth := 0
	for i := 0; i < len(block); i++ {
		switch block[i] {
		case '{':
			depth++
		case '}':
			depth--
		case '/':
			if strings.HasPrefix(block[i:], "//") {
				i += strings.IndexByte(block[i:], '\n')
			}
		case '"':
			if m := key.FindStringSubmatch(block[i:]); m != nil && depth == 1 {
				doc = append(doc, m[1])
			}
			i += 1 + strings.IndexByte(block[i+1:], '"')
		}
	}
	var want []string
	for _, f := range Fields {
		want = append(want, f.Name)
	}
	if !slices.Equal(doc, want) {
		t.Errorf("README events example fields\n %v\nEvent's topic fields\n %v", doc, want)
	}
}

// The README's mql and mqa examples have exactly the keys the records have,
// and the records' arrays are arrays even when empty.
func TestREADMECrossingExamplesMatchRecords(t *testing.T) {
	at := time.Date(2026, 3, 2, 10, 10, 0, 0, time.UTC)
	mql, err := json.Marshal(MQL{MQLID: MQLID("l", "default", "e"), LeadID: "l", Model: "default", CrossedAt: at})
	if err != nil {
		t.Fatal(err)
	}
	if got, doc := keysOf(t, mql), keysOf(t, []byte(readmeBlock(t, "### `leadstream.mql`"))); !slices.Equal(got, doc) {
		t.Errorf("mql record keys %v, README %v", got, doc)
	}
	mqa, err := json.Marshal(&MQA{MQAID: MQAID("a", "default", "e"), AccountID: "a", Model: "default", CrossedAt: at})
	if err != nil {
		t.Fatal(err)
	}
	if got, doc := keysOf(t, mqa), keysOf(t, []byte(readmeBlock(t, "### `leadstream.mqa`"))); !slices.Equal(got, doc) {
		t.Errorf("mqa record keys %v, README %v", got, doc)
	}
	if !strings.Contains(string(mql), `"reasons":[]`) {
		t.Errorf("mql record without reasons: %s, want \"reasons\":[]", mql)
	}
	if !strings.Contains(string(mqa), `"reasons":[],"top_members":[]`) {
		t.Errorf("mqa record without reasons or members: %s, want [] for both", mqa)
	}
	if !strings.Contains(string(mqa), `"crossed_at":"2026-03-02T10:10:00Z"`) {
		t.Errorf("mqa crossed_at: %s", mqa)
	}
}

// An MQA record decoded and encoded again (the processor's outbox, the
// erasure's rewrite) keeps its form; members and reasons stay in order.
func TestMQARecordRoundTrip(t *testing.T) {
	in := `{"mqa_id":"0fca1823-8ef3-5221-8c8d-f3cf3791c284","account_id":"acme","model":"default","score":154.998,"threshold":150,"crossed_at":"2026-03-02T10:10:00Z","trigger_event_id":"b2","engaged_members":2,"reasons":[{"rule":"engagement","points":104.998},{"rule":"target-industry","points":30}],"top_members":[{"lead_id":"alice","points":60},{"lead_id":"bob","points":44.998}]}`
	var m MQA
	if err := json.Unmarshal([]byte(in), &m); err != nil {
		t.Fatal(err)
	}
	for _, v := range []any{m, &m} {
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != in {
			t.Errorf("round trip\n got %s\nwant %s", out, in)
		}
	}
}
