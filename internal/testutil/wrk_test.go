package testutil

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The reports in testdata are real wrk 4.1.0 output, captured by test/e2e against
// gunicorn serving its testdata/app.py: a clean run; a run during which
// gunicorn, binding its port itself, was restarted once; a run against
// python3 -m http.server for a missing file; and wrk's whole output when
// the port was closed from the start.
func TestParseWrk(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		want    WrkResult
		wantErr bool
	}{
		{
			name: "clean",
			file: "wrk-clean.txt",
			want: WrkResult{Requests: 17810, Duration: 2040 * time.Millisecond, LatencyMax: 51560 * time.Microsecond},
		},
		{
			name: "socket errors",
			file: "wrk-socket-errors.txt",
			want: WrkResult{Requests: 29315, Duration: 4520 * time.Millisecond, LatencyMax: 68830 * time.Microsecond,
				Read: 32, Write: 5798},
		},
		{
			name: "non-2xx",
			file: "wrk-non2xx.txt",
			want: WrkResult{Requests: 1678, Duration: 1100 * time.Millisecond, LatencyMax: 8430 * time.Microsecond,
				Non2xx3xx: 1678},
		},
		{
			name:    "refused at start",
			file:    "wrk-refused.txt",
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseWrk(string(b))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseWrk(%s) = %v, want an error", tt.file, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseWrk(%s): %v", tt.file, err)
			}
			if got != tt.want {
				t.Errorf("ParseWrk(%s) =\n  %v\nwant\n  %v", tt.file, got, tt.want)
			}
		})
	}
}
