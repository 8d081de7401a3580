package leadstate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/scoring"
)

// codecVersion is the first byte of an encoded state: 1, or 2 when the state
// has account fields (encoded after the traits, codec_accounts.go). States
// without them are written as version 1, as before accounts. Either version
// may end with the audience hits (a trailing section, only when there are
// some).
const (
	codecVersion         = 1
	codecVersionAccounts = 2
)

// ErrCorruptState means a stored state value cannot be decoded: it was not
// written by this version of leadstream, or it was damaged; or a key of the
// subject holds another Redis type than leadstream writes there (WRONGTYPE).
var ErrCorruptState = errors.New("corrupt lead state in redis")

// encodeState appends st's stored form to dst: a compact binary encoding, in
// a fixed order (rules, windows and traits sorted), so equal states encode
// equally.
func encodeState(dst []byte, st *scoring.State) []byte {
	e := encoder{b: dst}
	withAccounts := hasAccountFields(st)
	if withAccounts {
		e.b = append(e.b, codecVersionAccounts)
	} else {
		e.b = append(e.b, codecVersion)
	}
	var flags byte
	if st.Anonymous {
		flags |= 1
	}
	if st.Pending {
		flags |= 2
	}
	if st.Account {
		flags |= 4
	}
	e.b = append(e.b, flags)
	e.str(st.ID)
	e.str(st.Into)
	e.str(st.MergeMark)
	e.int(st.MergeTime)
	e.int(st.MaxTime)
	e.uint(uint64(len(st.Recent)))
	for _, b := range st.Recent {
		e.int(b.Bucket)
		e.uint(uint64(len(b.IDs)))
		for _, fp := range b.IDs {
			e.b = binary.LittleEndian.AppendUint64(e.b, fp)
		}
	}
	e.uint(uint64(len(st.Spilled)))
	for _, b := range st.Spilled {
		e.int(b)
	}
	e.uint(uint64(len(st.Models)))
	for i := range st.Models {
		ms := &st.Models[i]
		e.str(ms.Name)
		e.str(ms.RulesHash)
		e.float(ms.V)
		e.int(ms.T)
		e.float(ms.Fit)
		e.uint(uint64(len(ms.FitReasons)))
		for _, r := range ms.FitReasons {
			e.str(r.Rule)
			e.float(r.Points)
		}
		if ms.MQL {
			e.b = append(e.b, 1)
		} else {
			e.b = append(e.b, 0)
		}
		e.int(ms.MQLAt)
		e.str(ms.MQLTrigger)
		rules := make([]string, 0, len(ms.Rules))
		for r := range ms.Rules {
			rules = append(rules, r)
		}
		sort.Strings(rules)
		e.uint(uint64(len(rules)))
		for _, r := range rules {
			e.str(r)
			e.float(ms.Rules[r].V)
			e.int(ms.Rules[r].T)
		}
		keys := make([]scoring.CapKey, 0, len(ms.Caps))
		for k := range ms.Caps {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(a, b int) bool {
			if keys[a].Rule != keys[b].Rule {
				return keys[a].Rule < keys[b].Rule
			}
			return keys[a].Window < keys[b].Window
		})
		e.uint(uint64(len(keys)))
		for _, k := range keys {
			e.str(k.Rule)
			e.int(k.Window)
			hits := ms.Caps[k]
			e.uint(uint64(len(hits)))
			for _, h := range hits {
				e.int(h.Time)
				e.str(h.ID)
				e.float(h.Points)
			}
		}
	}
	traits := make([]string, 0, len(st.Traits))
	for k := range st.Traits {
		traits = append(traits, k)
	}
	sort.Strings(traits)
	e.uint(uint64(len(traits)))
	for _, k := range traits {
		t := st.Traits[k]
		e.str(k)
		e.str(string(t.Value))
		e.int(t.Time)
		e.str(t.ID)
	}
	if withAccounts {
		e.accounts(st)
	}
	// Audience hits: a trailing section after everything else (the account
	// fields too), written only when there are some, so states without them
	// encode as before in either version.
	if len(st.Audiences) > 0 {
		names := make([]string, 0, len(st.Audiences))
		for n := range st.Audiences {
			names = append(names, n)
		}
		sort.Strings(names)
		e.uint(uint64(len(names)))
		for _, n := range names {
			hits := st.Audiences[n]
			e.str(n)
			e.uint(uint64(len(hits)))
			for _, h := range hits {
				e.int(h.Time)
				e.str(h.ID)
			}
		}
	}
	return e.b
}

type encoder struct{ b []byte }

func (e *encoder) uint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) int(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) float(f float64) {
	e.b = binary.LittleEndian.AppendUint64(e.b, math.Float64bits(f))
}
func (e *encoder) str(s string) {
	e.uint(uint64(len(s)))
	e.b = append(e.b, s...)
}

// decodeState decodes a stored state.
func decodeState(b []byte) (*scoring.State, error) {
	d := decoder{b: b}
	version := d.byte()
	if version != codecVersion && version != codecVersionAccounts {
		return nil, fmt.Errorf("%w: unknown encoding", ErrCorruptState)
	}
	flags := d.byte()
	st := &scoring.State{}
	st.Anonymous, st.Pending, st.Account = flags&1 != 0, flags&2 != 0, flags&4 != 0
	st.ID = d.str()
	st.Into = d.str()
	st.MergeMark = d.str()
	st.MergeTime = d.int()
	st.MaxTime = d.int()
	if n := d.count(); n > 0 {
		st.Recent = make([]scoring.BucketIDs, n)
		for i := range st.Recent {
			st.Recent[i].Bucket = d.int()
			ids := make([]uint64, d.count())
			for j := range ids {
				ids[j] = d.uint64()
			}
			st.Recent[i].IDs = ids
		}
	}
	if n := d.count(); n > 0 {
		st.Spilled = make([]int64, n)
		for i := range st.Spilled {
			st.Spilled[i] = d.int()
		}
	}
	n := d.count()
	if n > 0 {
		st.Models = make([]scoring.ModelState, n)
	}
	for i := range st.Models {
		ms := &st.Models[i]
		ms.Name = d.str()
		ms.RulesHash = d.str()
		ms.V = d.float()
		ms.T = d.int()
		ms.Fit = d.float()
		if n := d.count(); n > 0 {
			ms.FitReasons = make([]event.Reason, n)
			for j := range ms.FitReasons {
				ms.FitReasons[j] = event.Reason{Rule: d.str(), Points: d.float()}
			}
		}
		ms.MQL = d.byte() == 1
		ms.MQLAt = d.int()
		ms.MQLTrigger = d.str()
		if n := d.count(); n > 0 {
			ms.Rules = make(map[string]scoring.RuleValue, n)
			for range n {
				r := d.str()
				ms.Rules[r] = scoring.RuleValue{V: d.float(), T: d.int()}
			}
		}
		if n := d.count(); n > 0 {
			ms.Caps = make(map[scoring.CapKey][]scoring.CapHit, n)
			for range n {
				k := scoring.CapKey{Rule: d.str(), Window: d.int()}
				hits := make([]scoring.CapHit, d.count())
				for j := range hits {
					hits[j] = scoring.CapHit{Time: d.int(), ID: d.str(), Points: d.float()}
				}
				ms.Caps[k] = hits
			}
		}
	}
	if n := d.count(); n > 0 {
		st.Traits = make(map[string]*scoring.Trait, n)
		for range n {
			k := d.str()
			st.Traits[k] = &scoring.Trait{Value: []byte(d.str()), Time: d.int(), ID: d.str()}
		}
	}
	if version == codecVersionAccounts {
		d.accounts(st)
	}
	// What is left is the audience hits' trailing section (both versions).
	if len(d.b) > 0 && d.err == nil {
		n := d.count()
		if n > 0 {
			st.Audiences = make(map[string][]scoring.AudienceHit, n)
		}
		for range n {
			name := d.str()
			hits := make([]scoring.AudienceHit, d.count())
			for j := range hits {
				hits[j] = scoring.AudienceHit{Time: d.int(), ID: d.str()}
			}
			st.Audiences[name] = hits
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes left over", ErrCorruptState, len(d.b))
	}
	return st, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated", ErrCorruptState)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length that must fit in what is left (every element takes
// at least one byte), so a damaged value cannot make decoding allocate much.
func (d *decoder) count() int {
	v := d.uint()
	if v > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(v)
}

func (d *decoder) int() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint64() uint64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) float() float64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return v
}

func (d *decoder) str() string {
	n := d.count()
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
