package proto

import (
	"reflect"
	"testing"
	"unsafe"
)

func TestDecodeRequestReuse(t *testing.T) {
	prev := string([]byte("web")) // a string of its own, not a constant
	tests := []struct {
		name   string
		req    Request
		prev   string
		reused bool
	}{
		{name: "same name", req: Request{Op: OpGet, Name: "web"}, prev: prev, reused: true},
		{name: "other name", req: Request{Op: OpGet, Name: "api"}, prev: prev},
		{name: "no previous name", req: Request{Op: OpDelete, Name: "web"}, prev: ""},
		{name: "store", req: Request{Op: OpStore, Flags: FlagReplace, Name: "web"}, prev: prev, reused: true},
		{name: "list cursor", req: Request{Op: OpList}, prev: prev},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := AppendRequest(nil, &tt.req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeRequestReuse(b, tt.prev)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.req) {
				t.Fatalf("got %+v, want %+v", got, tt.req)
			}
			same := len(got.Name) > 0 && unsafe.StringData(got.Name) == unsafe.StringData(tt.prev)
			if same != tt.reused {
				t.Errorf("name reused: %v, want %v", same, tt.reused)
			}
			if len(got.Name) > 0 && unsafe.StringData(got.Name) == &b[HeaderSize+1] {
				t.Errorf("name points into the message buffer, which the caller reuses")
			}
		})
	}
	t.Run("no allocation for the same name", func(t *testing.T) {
		b, err := AppendRequest(nil, &Request{Op: OpGet, Name: "web"})
		if err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() { DecodeRequestReuse(b, prev) }); n != 0 {
			t.Errorf("%v allocations per decode, want 0", n)
		}
	})
}
