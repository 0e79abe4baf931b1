package main

import (
	"math"
	"slices"
	"testing"
)

func TestYTicks(t *testing.T) {
	tests := []struct {
		name   string
		lo, hi float64
		log    bool
		want   []float64
	}{
		{name: "log", lo: 3, hi: 60, log: true, want: []float64{5, 10, 20, 50}},
		{name: "linear", lo: 0, hi: 40, want: []float64{0, 10, 20, 30, 40}},
		// The ranges of a chart with no data (a results file holding only
		// a scale record): these used to loop forever.
		{name: "log from zero", lo: 0, hi: 10, log: true},
		{name: "empty range", lo: 5, hi: 5},
		{name: "no data", lo: math.Inf(1), hi: math.Inf(-1), log: true},
		{name: "not a number", lo: math.NaN(), hi: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := yTicks(tt.lo, tt.hi, tt.log); !slices.Equal(got, tt.want) {
				t.Errorf("yTicks(%v, %v, %v) = %v, want %v", tt.lo, tt.hi, tt.log, got, tt.want)
			}
		})
	}
}
