package scoring

import (
	"hash/fnv"
	"slices"
)

// Fingerprint is how an event id is remembered for dedup: its 64-bit
// FNV-1a hash. Two ids of one subject in one dedup bucket share one with a
// probability of about n²/2⁶⁵ (3·10⁻¹² for 10,000 ids).
func Fingerprint(id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return h.Sum64()
}

// InlineIDs is how many applied ids a state keeps itself (State.Recent):
// the dedup of most subjects costs nothing beyond reading and writing their
// state. Ids beyond it go to a set per bucket beside the state (Spilled).
const InlineIDs = 256

// BucketIDs are the fingerprints, sorted, of the ids applied with an event
// time in one dedup bucket.
type BucketIDs struct {
	Bucket int64
	IDs    []uint64
}

func (s *State) inline() int {
	n := 0
	for _, b := range s.Recent {
		n += len(b.IDs)
	}
	return n
}

func (s *State) bucketAt(b int64) (int, bool) {
	return slices.BinarySearchFunc(s.Recent, b, func(x BucketIDs, b int64) int { return cmpInt(x.Bucket, b) })
}

// hasInline reports whether the state keeps fp in bucket b.
func (s *State) hasInline(b int64, fp uint64) bool {
	i, ok := s.bucketAt(b)
	if !ok {
		return false
	}
	_, found := slices.BinarySearch(s.Recent[i].IDs, fp)
	return found
}

// addInline keeps fp in bucket b, unless the state keeps InlineIDs already.
func (s *State) addInline(b int64, fp uint64) bool {
	if s.inline() >= InlineIDs {
		return false
	}
	i, ok := s.bucketAt(b)
	if !ok {
		s.Recent = slices.Insert(s.Recent, i, BucketIDs{Bucket: b})
	}
	ids := s.Recent[i].IDs
	j, found := slices.BinarySearch(ids, fp)
	if !found {
		s.Recent[i].IDs = slices.Insert(ids, j, fp)
	}
	return true
}

// isSpilled reports whether ids of bucket b are kept outside the state.
func (s *State) isSpilled(b int64) bool {
	_, ok := slices.BinarySearch(s.Spilled, b)
	return ok
}

func (s *State) spill(b int64) {
	if i, ok := slices.BinarySearch(s.Spilled, b); !ok {
		s.Spilled = slices.Insert(s.Spilled, i, b)
	}
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
