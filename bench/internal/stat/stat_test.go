package stat

import "testing"

// The scale row is the median of its rounds' ratios.
func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{name: "none", in: nil, want: 0},
		{name: "one", in: []float64{1.2}, want: 1.2},
		{name: "odd, unsorted", in: []float64{1.3, 0.9, 1.1}, want: 1.1},
		{name: "even: mean of the middle two", in: []float64{1.4, 1.0, 1.2, 0.8}, want: 1.1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Median(tt.in); got < tt.want-1e-9 || got > tt.want+1e-9 {
				t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
