package scoring

import "testing"

// Errors name a subject by its kind: an account's state that does not
// decode was reported as a lead's.
func TestSubjectString(t *testing.T) {
	for s, want := range map[Subject]string{
		Lead("jane"):    `lead "jane"`,
		Anon("v-1"):     `visitor "v-1"`,
		Account("acme"): `account "acme"`,
	} {
		if got := s.String(); got != want {
			t.Errorf("%#v.String() = %s, want %s", s, got, want)
		}
	}
}
