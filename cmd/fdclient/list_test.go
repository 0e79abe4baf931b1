package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/fdholder/fdholder"
)

// fixedEntries are entries of every kind the table and the JSON show
// differently, with fixed times.
func fixedEntries() []fdholder.Entry {
	stored := time.Date(2026, 11, 21, 10, 38, 51, 123456789, time.UTC)
	return []fdholder.Entry{
		{Name: "admin", Network: "tcp6", Address: "[::1]:9090", Listening: true,
			OwnerUID: 1000, OwnerGID: 1000, OwnerPID: 4242, StoredAt: stored,
			HasQueue: true, Queued: 0, Backlog: 4096},
		{Name: "dns", Network: "udp", Address: "127.0.0.1:5353",
			OwnerUID: 0, OwnerGID: 0, OwnerPID: 17, StoredAt: stored.Add(-time.Hour),
			ExpiresAt: stored.Add(90 * time.Minute)},
		{Name: "sock/app", Network: "unix", Address: "/run/app.sock", Listening: true,
			OwnerUID: 33, OwnerGID: 33, OwnerPID: 123456, StoredAt: stored.Add(-48 * time.Hour)},
		{Name: "unbound", Network: "unixgram", Address: "",
			OwnerUID: 0, OwnerGID: 0, OwnerPID: 1, StoredAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		{Name: "web", Network: "tcp", Address: "127.0.0.1:8080", Listening: true,
			OwnerUID: 0, OwnerGID: 0, OwnerPID: 999, StoredAt: stored,
			ExpiresAt: stored.Add(24 * time.Hour).Add(500 * time.Millisecond),
			HasQueue:  true, Queued: 3, Backlog: 128},
	}
}

func TestWriteTable(t *testing.T) {
	tests := []struct {
		name    string
		entries []fdholder.Entry
		loc     *time.Location
		golden  string
	}{
		{"entries in UTC", fixedEntries(), time.UTC, "list.golden"},
		{"entries in a zone", fixedEntries(), time.FixedZone("UTC+2", 2*60*60), "list-zone.golden"},
		{"empty", nil, time.UTC, "list-empty.golden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := writeTable(&b, tt.entries, tt.loc); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, tt.golden, b.Bytes())
		})
	}
}

func TestWriteJSON(t *testing.T) {
	tests := []struct {
		name    string
		entries []fdholder.Entry
		golden  string
	}{
		{"entries", fixedEntries(), "list.json.golden"},
		{"empty", nil, "list-empty.json.golden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := writeJSON(&b, tt.entries); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, tt.golden, b.Bytes())

			// Beyond the bytes: it is an array, times round-trip exactly,
			// and the optional keys appear exactly when they apply.
			var got []map[string]any
			if err := json.Unmarshal(b.Bytes(), &got); err != nil {
				t.Fatalf("not a JSON array: %v\n%s", err, b.Bytes())
			}
			if len(got) != len(tt.entries) {
				t.Fatalf("%d objects, want %d", len(got), len(tt.entries))
			}
			for i, e := range tt.entries {
				o := got[i]
				stored, err := time.Parse(time.RFC3339Nano, o["stored_at"].(string))
				if err != nil || !stored.Equal(e.StoredAt) {
					t.Errorf("%s: stored_at %v (%v), want %v", e.Name, o["stored_at"], err, e.StoredAt)
				}
				_, hasExp := o["expires_at"]
				if hasExp != !e.ExpiresAt.IsZero() {
					t.Errorf("%s: expires_at present %v, want %v", e.Name, hasExp, !e.ExpiresAt.IsZero())
				}
				_, hasQ := o["queued"]
				_, hasB := o["backlog"]
				if hasQ != e.HasQueue || hasB != e.HasQueue {
					t.Errorf("%s: queued/backlog present %v/%v, want %v", e.Name, hasQ, hasB, e.HasQueue)
				}
				for _, k := range []string{"name", "network", "address", "listening", "owner_uid", "owner_gid", "owner_pid"} {
					if _, ok := o[k]; !ok {
						t.Errorf("%s: no key %q", e.Name, k)
					}
				}
			}
		})
	}
}

func TestWriteNames(t *testing.T) {
	tests := []struct {
		name    string
		entries []fdholder.Entry
		want    string
	}{
		{"entries", fixedEntries(), "admin\ndns\nsock/app\nunbound\nweb\n"},
		{"empty", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := writeNames(&b, tt.entries); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("got %q, want %q", b.String(), tt.want)
			}
		})
	}
}
