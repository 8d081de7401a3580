package leadstate

import (
	"github.com/leadstream/leadstream/scoring"
)

// The account fields of a state (codec version 2), after the traits:
//
//	group, domain      membership: flag byte (0 = none), then account, time, id
//	member_of          string
//	acct_seq           uvarint
//	left               count, then (account, seq) each
//	members            count, then (lead, seq, left byte, count, (model, v, t) each) each

func hasAccountFields(st *scoring.State) bool {
	return st.Group != nil || st.Domain != nil || st.MemberOf != "" || st.AcctSeq != 0 || len(st.Left) > 0 || len(st.Members) > 0
}

func (e *encoder) membership(m *scoring.Membership) {
	if m == nil {
		e.b = append(e.b, 0)
		return
	}
	e.b = append(e.b, 1)
	e.str(m.Account)
	e.int(m.Time)
	e.str(m.ID)
}

func (e *encoder) accounts(st *scoring.State) {
	e.membership(st.Group)
	e.membership(st.Domain)
	e.str(st.MemberOf)
	e.uint(st.AcctSeq)
	e.uint(uint64(len(st.Left)))
	for _, l := range st.Left {
		e.str(l.Account)
		e.uint(l.Seq)
	}
	e.uint(uint64(len(st.Members)))
	for _, m := range st.Members {
		e.str(m.Lead)
		e.uint(m.Seq)
		if m.Left {
			e.b = append(e.b, 1)
		} else {
			e.b = append(e.b, 0)
		}
		e.uint(uint64(len(m.Values)))
		for _, v := range m.Values {
			e.str(v.Model)
			e.float(v.V)
			e.int(v.T)
		}
	}
}

func (d *decoder) membership() *scoring.Membership {
	if d.byte() == 0 {
		return nil
	}
	return &scoring.Membership{Account: d.str(), Time: d.int(), ID: d.str()}
}

func (d *decoder) accounts(st *scoring.State) {
	st.Group = d.membership()
	st.Domain = d.membership()
	st.MemberOf = d.str()
	st.AcctSeq = d.uint()
	if n := d.count(); n > 0 {
		st.Left = make([]scoring.LeftAccount, n)
		for i := range st.Left {
			st.Left[i] = scoring.LeftAccount{Account: d.str(), Seq: d.uint()}
		}
	}
	if n := d.count(); n > 0 {
		st.Members = make([]scoring.AccountEntry, n)
		for i := range st.Members {
			m := &st.Members[i]
			m.Lead = d.str()
			m.Seq = d.uint()
			m.Left = d.byte() == 1
			if k := d.count(); k > 0 {
				m.Values = make([]scoring.MemberValue, k)
				for j := range m.Values {
					m.Values[j] = scoring.MemberValue{Model: d.str(), V: d.float(), T: d.int()}
				}
			}
		}
	}
}
