package proto

import (
	"bytes"
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/testutil"
)

// TestLoadRequest round-trips load requests up to a full batch, and checks
// that the limits hold on both ends.
func TestLoadRequest(t *testing.T) {
	full := make([]Entry, MaxBatchEntries)
	for i := range full {
		full[i] = Entry{Name: "svc/" + strings.Repeat("x", 40) + string(rune('a'+i%26)), Network: "tcp6",
			Address: "[::1]:65535", Listening: true, UID: 1, GID: 2, PID: 3, StoredAt: time.Unix(int64(i), 7)}
	}
	tests := []struct {
		name string
		req  Request
		code Code // of AppendRequest; CodeOK: it encodes and round-trips
	}{
		{"one", Request{Op: OpLoad, Entries: full[:1]}, CodeOK},
		{"a full batch, replacing", Request{Op: OpLoad, Flags: FlagReplace, Entries: full}, CodeOK},
		{"no entry", Request{Op: OpLoad}, CodeTooLarge},
		{"over a batch", Request{Op: OpLoad, Entries: append(full[:len(full):len(full)], full[0])}, CodeTooLarge},
		{"a name on load", Request{Op: OpLoad, Name: "x", Entries: full[:1]}, CodeBadRequest},
		{"entries on another op", Request{Op: OpGet, Name: "x", Entries: full[:1]}, CodeBadRequest},
		{"a pattern on another op", Request{Op: OpList, Pattern: "*"}, CodeBadRequest},
		{"a pattern too long", Request{Op: OpDump, Pattern: strings.Repeat("*", MaxPatternLen+1)}, CodeTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := AppendRequest(nil, &tt.req)
			if tt.code != CodeOK {
				if CodeOf(err) != tt.code {
					t.Fatalf("AppendRequest: %v, want code %v", err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > MaxLoadRequestSize {
				t.Errorf("%d bytes, over MaxLoadRequestSize", len(b))
			}
			got, err := DecodeRequest(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Entries, tt.req.Entries) || got.Flags != tt.req.Flags {
				t.Errorf("round trip differs")
			}
		})
	}
}

// TestLoadRequestRefusesQueueFigures: a load carries metadata, not live
// figures; an encoder drops them and a decoder refuses them.
func TestLoadRequestRefusesQueueFigures(t *testing.T) {
	e := testEntry("q") // has queue figures
	b, err := AppendRequest(nil, &Request{Op: OpLoad, Entries: []Entry{e}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Entries[0].HasQueue {
		t.Error("queue figures travelled in a load request")
	}
	// Set the queue flag by hand: refused.
	raw, _ := AppendRequest(nil, &Request{Op: OpLoad, Entries: []Entry{{Name: "q", StoredAt: time.Unix(1, 0)}}})
	flagAt := HeaderSize + 2 + 1 + 1 + 1 + 0 + 2 // count, name "q", network "", address ""
	raw[flagAt] |= entryQueue
	if _, err := DecodeRequest(raw); CodeOf(err) != CodeBadRequest {
		t.Errorf("queue flag in a load request: %v, want bad request", err)
	}
}

// TestRecvLarge receives messages of every size class through RecvLarge:
// small ones land in the small buffer, a large one in a borrowed buffer,
// one over the limit fails; every descriptor arrives or is closed; the
// read deadline and the end of the stream come through.
func TestRecvLarge(t *testing.T) {
	testutil.CheckLeaks(t)
	c, peer := pair(t)
	small := make([]byte, MaxRequestSize)
	tests := []struct {
		name    string
		size    int
		fds     int
		inSmall bool
		code    Code // CodeOK: received
	}{
		{name: "small", size: 100, fds: 1, inSmall: true},
		{name: "exactly the small buffer", size: MaxRequestSize, inSmall: true},
		{name: "a load", size: 40 << 10, fds: MaxBatchEntries},
		{name: "the largest load", size: MaxLoadRequestSize, fds: 2},
		{name: "over the limit", size: MaxLoadRequestSize + 1, fds: 3, code: CodeTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := bytes.Repeat([]byte{byte(tt.size)}, tt.size)
			var oob []byte
			if tt.fds > 0 {
				oob = unix.UnixRights(pipes(t, tt.fds)...)
			}
			if err := unix.Sendmsg(peer, body, oob, nil, 0); err != nil {
				t.Fatal(err)
			}
			msg, fds, release, err := c.RecvLarge(small, nil)
			defer release()
			for _, f := range fds {
				f.Close()
			}
			if tt.code != CodeOK {
				if CodeOf(err) != tt.code || len(fds) != 0 {
					t.Fatalf("err %v, %d descriptors; want code %v and none", err, len(fds), tt.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(msg, body) || len(fds) != tt.fds {
				t.Fatalf("received %d bytes, %d descriptors; want %d, %d", len(msg), len(fds), tt.size, tt.fds)
			}
			if inSmall := &msg[0] == &small[0]; inSmall != tt.inSmall {
				t.Errorf("in the small buffer: %v, want %v", inSmall, tt.inSmall)
			}
		})
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, _, release, err := c.RecvLarge(small, nil); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("past the deadline: %v, want os.ErrDeadlineExceeded", err)
	} else {
		release()
	}
	c.SetReadDeadline(time.Time{})
	unix.Shutdown(peer, unix.SHUT_WR)
	if _, _, release, err := c.RecvLarge(small, nil); !errors.Is(err, io.EOF) {
		t.Errorf("at the end: %v, want io.EOF", err)
	} else {
		release()
	}
}
