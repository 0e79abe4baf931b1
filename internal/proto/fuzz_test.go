package proto

import (
	"bytes"
	"testing"
	"time"
)

// The fuzz targets check that decoding never panics, that everything
// decoded re-encodes to the very same bytes (only canonical encodings are
// accepted), and that every error is an *Error a holder can reply with.
// Run one with: go test ./internal/proto -run '^$' -fuzz FuzzDecodeRequest -fuzztime 60s

func FuzzDecodeRequest(f *testing.F) {
	for _, r := range []Request{
		{Op: OpStore, Name: "web"},
		{Op: OpStore, Flags: FlagReplace, Name: "a.b@c", TTL: time.Hour},
		{Op: OpGet, Name: "web"},
		{Op: OpTake, Name: "x"},
		{Op: OpDelete, Name: "y"},
		{Op: OpList},
		{Op: OpList, Name: "after"},
		{Op: OpDump},
		{Op: OpDump, Name: "svc/0001", Pattern: "svc/*"},
		{Op: OpLoad, Entries: []Entry{{Name: "a", Network: "tcp", StoredAt: time.Unix(1, 2)}}},
		{Op: OpLoad, Flags: FlagReplace, Entries: []Entry{
			{Name: "a", Network: "tcp", Listening: true, UID: 1, StoredAt: time.Unix(1, 2), ExpiresAt: time.Unix(9, 0)},
			{Name: "b", Network: "unix", Address: "/run/b.sock", StoredAt: time.Unix(3, 4)}}},
	} {
		b, err := AppendRequest(nil, &r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte("FH"))
	f.Add([]byte{'F', 'H', 2, 1})
	addSeeds(f, decodeRequestSeeds)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %v is a %T, not an *Error", err, err)
			}
			return
		}
		again, err := AppendRequest(nil, &r)
		if err != nil {
			t.Fatalf("decoded %+v but cannot encode it: %v", r, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("round trip differs:\n in %x\nout %x", b, again)
		}
	})
}

func FuzzDecodeReply(f *testing.F) {
	e := Entry{Name: "web", Network: "tcp", Address: "127.0.0.1:80", Listening: true,
		UID: 1, GID: 2, PID: 3, StoredAt: time.Unix(1, 2), ExpiresAt: time.Unix(5, 0),
		HasQueue: true, Queued: 1, Backlog: 128}
	for _, r := range []Reply{
		{Op: OpStore, Entry: e},
		{Op: OpGet, Entry: Entry{Name: "u", Network: "unix", Address: "/run/x.sock"}},
		{Op: OpTake, Entry: e},
		{Op: OpDelete},
		{Op: OpList, Flags: FlagMore, Entries: []Entry{e, e}},
		{Op: OpList},
		{Op: OpDump, Flags: FlagMore, Entries: []Entry{e, e}},
		{Op: OpDump},
		{Op: OpLoad, Results: []Result{{}, {Code: CodeExists, Message: "name already held"}}},
		{Op: OpGet, Code: CodeNotFound, Message: "not held"},
		{Op: 99, Code: CodeUnknownOp, Message: "unknown operation 99"},
	} {
		b, err := AppendReply(nil, &r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	addSeeds(f, decodeReplySeeds)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeReply(b)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %v is a %T, not an *Error", err, err)
			}
			return
		}
		again, err := AppendReply(nil, &r)
		if err != nil {
			t.Fatalf("decoded %+v but cannot encode it: %v", r, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("round trip differs:\n in %x\nout %x", b, again)
		}
	})
}

// FuzzEachRight feeds arbitrary control data to the SCM_RIGHTS walker: it
// must never panic or read past the buffer. (The kernel builds this data,
// but the walker must not trust a length it did not check.)
func FuzzEachRight(f *testing.F) {
	one := make([]byte, rightsOneSize)
	f.Add((&Conn{sendb: one}).rights(7))
	f.Add([]byte{})
	f.Add(make([]byte, 15))
	addSeeds(f, eachRightSeeds)
	f.Fuzz(func(t *testing.T, oob []byte) {
		n := 0
		eachRight(oob, func(int) { n++ })
		if n > len(oob)/4 {
			t.Fatalf("%d descriptors out of %d bytes", n, len(oob))
		}
	})
}
