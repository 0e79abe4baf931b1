package stat

import "slices"

// Median returns the median of s, the mean of the middle two when len(s)
// is even, and 0 when s is empty. It sorts s.
func Median(s []float64) float64 {
	if len(s) == 0 {
		return 0
	}
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
