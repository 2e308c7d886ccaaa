package migrate

import (
	"bytes"
	"testing"

	"github.com/google/uuid"
)

// TestConvert: SQLite's values go into Postgres columns as the Postgres
// types want them, and a value that cannot is an error, not a guess.
func TestConvert(t *testing.T) {
	id := uuid.New()
	for _, tc := range []struct {
		in     any
		pgType string
		want   any
		bad    bool
	}{
		{nil, "bytea", nil, false},
		{[]byte{1, 2}, "bytea", []byte{1, 2}, false},
		{"ab", "bytea", []byte("ab"), false},
		{int64(1), "boolean", true, false},
		{int64(0), "boolean", false, false},
		{int64(7), "bigint", int64(7), false},
		{"42", "integer", int64(42), false},
		{id.String(), "uuid", id, false},
		{id[:], "uuid", id, false},
		{[]byte("x"), "text", "x", false},
		{"x", "text", "x", false},
		{1.5, "boolean", nil, true},
		{"x", "bigint", nil, true},
	} {
		got, err := convert(tc.in, tc.pgType)
		if tc.bad {
			if err == nil {
				t.Errorf("convert(%v, %s) = %v, want an error", tc.in, tc.pgType, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("convert(%v, %s): %v", tc.in, tc.pgType, err)
			continue
		}
		if b, ok := tc.want.([]byte); ok {
			if !bytes.Equal(got.([]byte), b) {
				t.Errorf("convert(%v, %s) = %v, want %v", tc.in, tc.pgType, got, tc.want)
			}
		} else if got != tc.want {
			t.Errorf("convert(%v, %s) = %v (%T), want %v", tc.in, tc.pgType, got, got, tc.want)
		}
	}
}
