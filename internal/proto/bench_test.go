package proto

import (
	"fmt"
	"testing"
	"time"
)

// Benchmarks of the codec alone, no I/O: the cost of each message on the
// get path (docs/benchmarks.md reports them). Run with
// go test -run '^$' -bench . -benchmem ./internal/proto

var benchEntry = Entry{
	Name: "web", Network: "tcp", Address: "127.0.0.1:8080", Listening: true,
	UID: 1000, GID: 1000, PID: 4242, StoredAt: time.Unix(1_700_000_000, 0),
}

func BenchmarkAppendRequestGet(b *testing.B) {
	req := Request{Op: OpGet, Name: "web"}
	buf := make([]byte, 0, MaxRequestSize)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendRequest(buf[:0], &req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeRequestGet(b *testing.B) {
	msg, err := AppendRequest(nil, &Request{Op: OpGet, Name: "web"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRequest(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendReplyGet(b *testing.B) {
	rep := Reply{Op: OpGet, Entry: benchEntry}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendReply(buf[:0], &rep); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeReplyGet(b *testing.B) {
	msg, err := AppendReply(nil, &Reply{Op: OpGet, Entry: benchEntry})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeReply(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// A full list page: what the holder encodes and a client decodes per page.
func BenchmarkListPage(b *testing.B) {
	var page []Entry
	size := 0
	for i := 0; ; i++ {
		e := benchEntry
		e.Name = fmt.Sprintf("scale-%06d", i)
		e.HasQueue, e.Backlog = true, 4096
		size += EntrySize(&e)
		if !ListPageFits(size) {
			break
		}
		page = append(page, e)
	}
	rep := Reply{Op: OpList, Flags: FlagMore, Entries: page}
	buf := make([]byte, 0, MaxReplySize)
	b.Run(fmt.Sprintf("Append/%d", len(page)), func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = AppendReply(buf[:0], &rep); err != nil {
				b.Fatal(err)
			}
		}
	})
	msg, err := AppendReply(nil, &rep)
	if err != nil {
		b.Fatal(err)
	}
	b.Run(fmt.Sprintf("Decode/%d", len(page)), func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeReply(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
}
