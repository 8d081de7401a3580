package ingest

// The collector's decoding before its fast paths, kept as the reference the
// fuzz tests compare the fast paths with (same events, same errors).

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"strings"

	"github.com/leadstream/leadstream/event"
)

func refDecodeMessage(raw []byte, where, forceType string, r *request) (*event.Event, error) {
	if len(raw) > MaxEventBytes {
		return nil, errField(where, "event is %d bytes, over the limit of 32 KB (%d bytes) per event", len(raw), MaxEventBytes)
	}
	var m segMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, errField(where, "malformed JSON: %v", err)
	}
	typ := m.Type
	if forceType != "" {
		if typ != "" && typ != forceType {
			return nil, errField(where+".type", "is %q but the endpoint is /v1/%s", typ, forceType)
		}
		typ = forceType
	}
	e := &event.Event{ReceivedAt: r.receivedAt, WriteKeyID: r.writeKeyID}
	var err error
	if e.AnonymousID, err = refIdString(m.AnonymousID, where+".anonymousId"); err != nil {
		return nil, err
	}
	if e.LeadID, err = refIdString(m.UserID, where+".userId"); err != nil {
		return nil, err
	}
	if err := checkObject(m.Properties, where+".properties"); err != nil {
		return nil, err
	}
	if err := checkObject(m.Traits, where+".traits"); err != nil {
		return nil, err
	}
	e.Properties = compactObject(m.Properties)
	switch typ {
	case "track":
		if m.Event == "" {
			return nil, errField(where+".event", "is required for track")
		}
		e.Track = m.Event
		e.Type = event.Custom
		if t, ok := trackTypes[m.Event]; ok {
			e.Type = t
		}
		if e.Type == event.DealWon {
			if err := dealFields(e, m.Properties, where); err != nil {
				return nil, err
			}
		}
	case "page", "screen":
		e.Type = event.PageView
		e.Title = m.Name
	case "identify":
		e.Type = event.Identify
		e.Traits = compactObject(m.Traits)
		if len(e.Traits) == 0 && m.Context != nil {
			if err := checkObject(m.Context.Traits, where+".context.traits"); err != nil {
				return nil, err
			}
			e.Traits = compactObject(m.Context.Traits)
		}
	case "group":
		// B2B account data: kept as a custom event with the group traits.
		e.Type = event.Custom
		e.Track = "Group"
		e.Traits = compactObject(m.Traits)
		if gid, err := refIdString(m.GroupID, where+".groupId"); err != nil {
			return nil, err
		} else if gid == "" {
			return nil, errField(where+".groupId", "is required for group")
		}
	case "alias":
		e.Type = event.Alias
		if e.PreviousID, err = refIdString(m.PreviousID, where+".previousId"); err != nil {
			return nil, err
		}
		if e.PreviousID == "" || e.LeadID == "" {
			return nil, errField(where, "alias needs both userId and previousId")
		}
	case "":
		return nil, errField(where+".type", "is required (track, page, screen, identify, alias or group)")
	default:
		return nil, errField(where+".type", "unknown type %q (want track, page, screen, identify, alias or group)", typ)
	}
	if e.AnonymousID == "" && e.LeadID == "" {
		return nil, errField(where, "userId or anonymousId is required")
	}
	if m.Context != nil {
		refApplyContext(e, m.Context)
	}
	e.IP, e.UserAgent = firstNonEmpty(e.IP, r.ip), firstNonEmpty(e.UserAgent, r.userAgent)
	if e.Type == event.PageView {
		refPageFromProperties(e, m.Properties)
	}
	if e.EventTime, err = eventTime(&m, r, where); err != nil {
		return nil, err
	}
	e.ID = m.MessageID
	if e.ID == "" {
		// Deterministic, so a client that retries a body without messageIds
		// still does not count twice.
		sum := sha256.Sum256(append([]byte(r.writeKeyID+"\x00"), raw...))
		e.ID = "gen-" + hex.EncodeToString(sum[:16])
	}
	if len(e.ID) > 256 {
		return nil, errField(where+".messageId", "is longer than 256 characters")
	}
	return e, nil
}

func refIdString(raw json.RawMessage, field string) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", errField(field, "malformed string")
		}
		if len(s) > 256 {
			return "", errField(field, "is longer than 256 characters")
		}
		return strings.TrimSpace(s), nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return string(raw), nil // Segment accepts numeric ids
	}
	return "", errField(field, "must be a string or a number")
}

func refApplyContext(e *event.Event, c *segContext) {
	e.IP, e.UserAgent = c.IP, c.UserAgent
	if p := c.Page; p != nil {
		e.URL, e.Path, e.Referrer = p.URL, p.Path, p.Referrer
		if e.Title == "" {
			e.Title = p.Title
		}
	}
	if c := c.Campaign; c != nil {
		e.UTMCampaign, e.UTMSource, e.UTMMedium, e.UTMTerm, e.UTMContent = c.Name, c.Source, c.Medium, c.Term, c.Content
	}
	refFillFromURL(e)
}

func refPageFromProperties(e *event.Event, raw json.RawMessage) {
	if len(raw) == 0 {
		return
	}
	var p segPage
	if json.Unmarshal(raw, &p) != nil {
		return
	}
	e.URL, e.Path = firstNonEmpty(e.URL, p.URL), firstNonEmpty(e.Path, p.Path)
	e.Referrer, e.Title = firstNonEmpty(e.Referrer, p.Referrer), firstNonEmpty(e.Title, p.Title)
	refFillFromURL(e)
}

func refFillFromURL(e *event.Event) {
	if e.URL == "" {
		return
	}
	u, err := url.Parse(e.URL)
	if err != nil {
		return
	}
	if e.Path == "" {
		e.Path = u.Path
		if e.Path == "" {
			e.Path = "/"
		}
	}
	q := u.Query()
	e.UTMSource = firstNonEmpty(e.UTMSource, q.Get("utm_source"))
	e.UTMMedium = firstNonEmpty(e.UTMMedium, q.Get("utm_medium"))
	e.UTMCampaign = firstNonEmpty(e.UTMCampaign, q.Get("utm_campaign"))
	e.UTMTerm = firstNonEmpty(e.UTMTerm, q.Get("utm_term"))
	e.UTMContent = firstNonEmpty(e.UTMContent, q.Get("utm_content"))
	if e.Campaign == "" {
		e.Campaign = e.UTMCampaign
	}
}
