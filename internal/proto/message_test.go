package proto

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"
)

func TestRequestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		req  Request
	}{
		{"store", Request{Op: OpStore, Name: "web"}},
		{"store replace ttl", Request{Op: OpStore, Flags: FlagReplace, Name: "a.b@c/d+e-f_g", TTL: 90 * time.Second}},
		{"get", Request{Op: OpGet, Name: "web"}},
		{"take", Request{Op: OpTake, Name: strings.Repeat("n", MaxNameLen)}},
		{"delete", Request{Op: OpDelete, Name: "web"}},
		{"list from the top", Request{Op: OpList}},
		{"list after", Request{Op: OpList, Name: "web"}},
		{"dump all", Request{Op: OpDump}},
		{"dump after, by pattern", Request{Op: OpDump, Name: "svc/0100", Pattern: "svc/*"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := AppendRequest(nil, &tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > MaxRequestSize {
				t.Errorf("encoded request is %d bytes, over MaxRequestSize", len(b))
			}
			got, err := DecodeRequest(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.req) {
				t.Errorf("round trip: got %+v, want %+v", got, tt.req)
			}
		})
	}
}

func TestAppendRequestRefuses(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		code Code
	}{
		{"unknown op", Request{Op: 9, Name: "x"}, CodeUnknownOp},
		{"reply op", Request{Op: OpGet | ReplyBit, Name: "x"}, CodeUnknownOp},
		{"flag on get", Request{Op: OpGet, Flags: FlagReplace, Name: "x"}, CodeBadRequest},
		{"unknown flag", Request{Op: OpStore, Flags: 2, Name: "x"}, CodeBadRequest},
		{"long name", Request{Op: OpGet, Name: strings.Repeat("n", MaxNameLen+1)}, CodeTooLarge},
		{"ttl on get", Request{Op: OpGet, Name: "x", TTL: time.Second}, CodeBadRequest},
		{"negative ttl", Request{Op: OpStore, Name: "x", TTL: -time.Second}, CodeBadRequest},
		{"sub-millisecond ttl", Request{Op: OpStore, Name: "x", TTL: time.Microsecond}, CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := AppendRequest(nil, &tt.req)
			if CodeOf(err) != tt.code {
				t.Errorf("err = %v (code %v), want code %v", err, CodeOf(err), tt.code)
			}
		})
	}
}

func TestDecodeRequestRefuses(t *testing.T) {
	valid, _ := AppendRequest(nil, &Request{Op: OpStore, Name: "web", TTL: time.Second})
	with := func(f func(b []byte) []byte) []byte {
		return f(bytes.Clone(valid))
	}
	tests := []struct {
		name string
		msg  []byte
		code Code
		want string // in the message
	}{
		{"empty", nil, CodeBadRequest, "bad magic"},
		{"bad magic", with(func(b []byte) []byte { b[0] = 'X'; return b }), CodeBadRequest, "bad magic"},
		{"other version", with(func(b []byte) []byte { b[2] = 2; return b }), CodeUnsupportedVersion, "version 2"},
		{"version only", []byte{'F', 'H', 7}, CodeUnsupportedVersion, "version 7"},
		{"truncated header", valid[:5], CodeBadRequest, "truncated header"},
		{"unknown op", with(func(b []byte) []byte { b[3] = 42; return b }), CodeUnknownOp, "unknown operation 42"},
		{"reply sent as request", with(func(b []byte) []byte { b[3] |= byte(ReplyBit); return b }), CodeUnknownOp, "unknown operation"},
		{"status in request", with(func(b []byte) []byte { b[7] = 1; return b }), CodeBadRequest, "no status code"},
		{"unknown flag", with(func(b []byte) []byte { b[5] = 4; return b }), CodeBadRequest, "unknown flags"},
		{"truncated name", valid[:HeaderSize+2], CodeBadRequest, "truncated"},
		{"truncated ttl", valid[:len(valid)-1], CodeBadRequest, "truncated"},
		{"trailing bytes", append(bytes.Clone(valid), 0), CodeBadRequest, "unexpected bytes"},
		{"ttl out of range", with(func(b []byte) []byte {
			copy(b[len(b)-8:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
			return b
		}), CodeBadRequest, "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeRequest(tt.msg)
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want an *Error", err)
			}
			if pe.Code != tt.code || !strings.Contains(pe.Message, tt.want) {
				t.Errorf("err = %q (code %v), want code %v and %q", pe.Message, pe.Code, tt.code, tt.want)
			}
		})
	}
}

func testEntry(name string) Entry {
	return Entry{
		Name: name, Network: "tcp", Address: "127.0.0.1:8080", Listening: true,
		UID: 1000, GID: 100, PID: 4242,
		StoredAt:  time.Unix(1700000000, 123456789),
		ExpiresAt: time.Unix(1700003600, 0),
		HasQueue:  true, Queued: 3, Backlog: 4096,
	}
}

func TestReplyRoundTrip(t *testing.T) {
	plain := testEntry("plain")
	plain.ExpiresAt, plain.HasQueue, plain.Queued, plain.Backlog = time.Time{}, false, 0, 0
	tests := []struct {
		name string
		rep  Reply
	}{
		{"store", Reply{Op: OpStore, Entry: testEntry("web")}},
		{"get", Reply{Op: OpGet, Entry: plain}},
		{"take", Reply{Op: OpTake, Entry: Entry{Name: "u", Network: "unixgram"}}},
		{"delete", Reply{Op: OpDelete}},
		{"empty list", Reply{Op: OpList}},
		{"list page", Reply{Op: OpList, Flags: FlagMore, Entries: []Entry{testEntry("a"), plain}}},
		{"dump page", Reply{Op: OpDump, Flags: FlagMore, Entries: []Entry{testEntry("a"), plain}}},
		{"load results", Reply{Op: OpLoad, Results: []Result{{}, {Code: CodeInvalidName, Message: "invalid name"}, {}}}},
		{"error", Reply{Op: OpGet, Code: CodeNotFound, Message: "not held"}},
		{"error for an unknown op", Reply{Op: 77, Code: CodeUnknownOp, Message: "unknown operation 77"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := AppendReply(nil, &tt.rep)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeReply(b)
			if err != nil {
				t.Fatal(err)
			}
			again, err := AppendReply(nil, &got)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, again) {
				t.Errorf("re-encoding differs:\n got %x\nwant %x", again, b)
			}
			if got.Op != tt.rep.Op || got.Code != tt.rep.Code || got.Message != tt.rep.Message || got.Flags != tt.rep.Flags {
				t.Errorf("header: got %+v, want %+v", got, tt.rep)
			}
			if tt.rep.Op == OpGet && tt.rep.Code == CodeOK && !got.Entry.StoredAt.Equal(plain.StoredAt) {
				t.Errorf("stored_at: got %v, want %v", got.Entry.StoredAt, plain.StoredAt)
			}
			if len(got.Entries) != len(tt.rep.Entries) {
				t.Errorf("entries: got %d, want %d", len(got.Entries), len(tt.rep.Entries))
			}
		})
	}
}

func TestDecodeReplyOtherVersion(t *testing.T) {
	b, _ := AppendReply(nil, &Reply{Op: OpGet, Code: CodeNotFound, Message: "x"})
	b[2] = 3
	_, err := DecodeReply(b)
	if !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("err = %v, want ErrUnsupportedVersion", err)
	}
	if !strings.Contains(err.Error(), "holder speaks version 3") {
		t.Errorf("message %q does not name the holder's version", err)
	}
}

func TestDecodeReplyRefusesNonCanonical(t *testing.T) {
	e := testEntry("web")
	good, _ := AppendReply(nil, &Reply{Op: OpGet, Entry: e})
	flagsAt := HeaderSize + 1 + len(e.Name) + 1 + len(e.Network) + 2 + len(e.Address)
	tests := []struct {
		name string
		edit func(b []byte) []byte
	}{
		{"unknown entry flag", func(b []byte) []byte { b[flagsAt] |= 0x80; return b }},
		{"expiry time without flag", func(b []byte) []byte { b[flagsAt] &^= entryExpires; return b }},
		{"queue figures without flag", func(b []byte) []byte { b[flagsAt] &^= entryQueue; return b }},
		{"more flag on get", func(b []byte) []byte { b[5] = byte(FlagMore); return b }},
		{"request sent as reply", func(b []byte) []byte { b[3] &^= byte(ReplyBit); return b }},
		{"list count beyond body", func(b []byte) []byte {
			l, _ := AppendReply(nil, &Reply{Op: OpList})
			return append(l[:HeaderSize], 0xff, 0xff)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeReply(tt.edit(bytes.Clone(good))); err == nil {
				t.Error("decoded without error")
			}
		})
	}
}

func TestAppendReplyLimit(t *testing.T) {
	var entries []Entry
	size := 0
	for i := 0; ; i++ {
		e := testEntry(strings.Repeat("x", 200))
		size += EntrySize(&e)
		if !ListPageFits(size) {
			entries = append(entries, e) // one past the limit
			break
		}
		entries = append(entries, e)
	}
	if _, err := AppendReply(nil, &Reply{Op: OpList, Entries: entries}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over-full page: err = %v, want ErrTooLarge", err)
	}
	b, err := AppendReply(nil, &Reply{Op: OpList, Entries: entries[:len(entries)-1]})
	if err != nil {
		t.Fatalf("full page: %v", err)
	}
	if len(b) > MaxReplySize {
		t.Fatalf("full page is %d bytes", len(b))
	}
}

func TestEntrySizeMatchesEncoding(t *testing.T) {
	e := testEntry("some/name")
	b, err := appendEntry(nil, &e)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != EntrySize(&e) {
		t.Errorf("EntrySize = %d, encoding is %d bytes", EntrySize(&e), len(b))
	}
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"web", true},
		{"0", true},
		{"a.b_c@d/e+f-g", true},
		{strings.Repeat("a", MaxNameLen), true},
		{"", false},
		{strings.Repeat("a", MaxNameLen+1), false},
		{"a:b", false},
		{".hidden", false},
		{"-flag", false},
		{"/abs", false},
		{"sp ace", false},
		{"tab\t", false},
		{"nul\x00", false},
		{"é", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateName(tt.name)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
			}
			if err != nil && (!errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), NameRule)) {
				t.Errorf("error %q does not wrap ErrInvalidName or name the rule", err)
			}
		})
	}
}

func TestCodes(t *testing.T) {
	for c := CodeBadRequest; c <= CodeInternal; c++ {
		s := c.Sentinel()
		if s == nil {
			t.Fatalf("code %d has no sentinel", c)
		}
		if got := CodeOf(s); got != c {
			t.Errorf("CodeOf(%v) = %d, want %d", s, got, c)
		}
		if got := CodeOf(&Error{Code: c}); got != c {
			t.Errorf("CodeOf(*Error{%d}) = %d", c, got)
		}
	}
	if CodeOf(nil) != CodeOK {
		t.Errorf("CodeOf(nil) = %v, want ok", CodeOf(nil))
	}
	if CodeOK.Sentinel() != nil {
		t.Error("CodeOK has a sentinel")
	}
	if !errors.Is((&Reply{Code: 999}).Err(), ErrInternal) {
		t.Error("an unknown code does not map to ErrInternal")
	}
}

// TestDecodeReplyNameShares checks that a get's reply reuses the name the
// caller asked for and a constant for a common network, so that decoding
// it allocates only the address; a name or network of another spelling is
// still decoded as sent.
func TestDecodeReplyNameShares(t *testing.T) {
	tests := []struct {
		name                 string
		held, asked, network string
		allocs               float64
	}{
		{name: "asked name, common network", held: "web", asked: "web", network: "tcp", allocs: 1},
		{name: "another name", held: "web", asked: "api", network: "tcp", allocs: 2},
		{name: "another network", held: "web", asked: "web", network: "netlink/raw", allocs: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := Entry{Name: tt.held, Network: tt.network, Address: "127.0.0.1:8080", StoredAt: time.Unix(1_700_000_000, 0)}
			msg, err := AppendReply(nil, &Reply{Op: OpGet, Entry: e})
			if err != nil {
				t.Fatal(err)
			}
			rep, err := DecodeReplyName(msg, tt.asked)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Entry.Name != tt.held || rep.Entry.Network != tt.network || rep.Entry.Address != e.Address {
				t.Errorf("decoded %+v, want %+v", rep.Entry, e)
			}
			if same := unsafe.StringData(rep.Entry.Name) == unsafe.StringData(tt.asked); same != (tt.held == tt.asked) {
				t.Errorf("name shares the asked string: %v, want %v", same, tt.held == tt.asked)
			}
			allocs := testing.AllocsPerRun(100, func() { DecodeReplyName(msg, tt.asked) })
			if allocs != tt.allocs {
				t.Errorf("%v allocations a decode, want %v", allocs, tt.allocs)
			}
		})
	}
}
