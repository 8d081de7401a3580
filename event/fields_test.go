package event

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestFieldsMatchStruct holds Fields to Event: the same fields, in the order
// of the struct (which is encoding/json's order), each with the kind its Go
// type has and an accessor that reaches that very field.
func TestFieldsMatchStruct(t *testing.T) {
	typ := reflect.TypeFor[Event]()
	if typ.NumField() != len(Fields) {
		t.Fatalf("Event has %d fields, event.Fields %d", typ.NumField(), len(Fields))
	}
	kindOf := map[reflect.Type]Kind{
		reflect.TypeFor[string]():          String,
		reflect.TypeFor[Type]():            String,
		reflect.TypeFor[time.Time]():       Time,
		reflect.TypeFor[json.RawMessage](): Object,
		reflect.TypeFor[float64]():         Number,
		reflect.TypeFor[bool]():            Bool,
	}
	var e Event
	v := reflect.ValueOf(&e).Elem()
	for i := range Fields {
		f, sf := &Fields[i], typ.Field(i)
		name, opts, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name != f.Name {
			t.Errorf("field %d: Fields says %q, the struct's tag %q", i, f.Name, name)
			continue
		}
		if k, ok := kindOf[sf.Type]; !ok || k != f.Kind {
			t.Errorf("%s: kind %d, Go type %s", f.Name, f.Kind, sf.Type)
			continue
		}
		if f.Always == (opts == "omitempty" || opts == "omitzero") {
			t.Errorf("%s: Always=%v but the tag's options are %q", f.Name, f.Always, opts)
		}
		want := v.Field(i).Addr().Pointer()
		var got uintptr
		switch f.Kind {
		case String:
			got = reflect.ValueOf(f.Str(&e)).Pointer()
		case Time:
			got = reflect.ValueOf(f.TimeOf(&e)).Pointer()
		case Object:
			got = reflect.ValueOf(f.Raw(&e)).Pointer()
		case Number:
			got = reflect.ValueOf(f.Num(&e)).Pointer()
		case Bool:
			got = reflect.ValueOf(f.Flag(&e)).Pointer()
		}
		if got != want {
			t.Errorf("%s: the accessor reaches another field", f.Name)
		}
		if fieldNamed(f.Name) != f {
			t.Errorf("%s: the decoder's lookup does not find it", f.Name)
		}
	}
	for _, k := range []string{"", "Event_id", "event_ID", "nope", "anonymous_idx", strings.Repeat("x", 40)} {
		if fieldNamed(k) != nil {
			t.Errorf("fieldNamed(%q) found a field", k)
		}
	}
}
