package proto

import "testing"

// Seeds from the corpus that fuzzing generated (3 x 90 s per target, no
// failure): for each target, the fewest inputs that together reach every
// block the whole corpus reached beyond the f.Add seeds of fuzz_test.go,
// found by running each input alone with -coverprofile. The rest of the
// corpus lives in the fuzz cache ($GOCACHE/fuzz); testdata/fuzz keeps only
// inputs that once found a bug.

var decodeRequestSeeds = []string{
	"FH\x01\a\x00\x01\x00\x00\x00\x020000000000000000000000000000000000000000000000000000000000000000000000000000000000",
	"FH\x01\x04\x00\x00\x00\x00\x0100",
	"FH\x01\x030000",
	"FH\x01\x0200\x00\x00",
	"FH\x01",
	"FH\x0100000",
	"FH\x01\x060000",
	"FH\x01\x05\x000\x00\x00",
	"FH\x01\a\x00\x01\x00\x00",
	"FH\x01\x01\x00\x00\x00\x00",
	"FH\x01\a\x00\x00\x00\x00\x000",
	"FH\x01\x01\x00\x00\x00\x00\x01000000000",
	"FH\x01\a\x00\x00\x00\x00\x00\x01\x010\x03000\x00\x002000000000000000000000000000000000000",
	"FH\x01\a\x00\x00\x00\x00\x00\x01\x010\x03000\x00\x00\x00000000000000000000000000000000000000",
	"FH\x01\a\x00\x01\x00\x00\x00\x02\x010\x03000\x00\x100000000000000000\a000000000000000000000000000000000000000000000000000000000",
	"FH\x01\a\x00\x01\x00\x00\x00\x02\x010\x03000\x00\x00\x050000000000000000000000000000000000000000000000000000000000000000000000000",
}

var decodeReplySeeds = []string{
	"FH\x01\x83\x00\x00\x00\x000",
	"FHx",
	"F00",
	"FH\x01\x870000",
	"FH\x01\x8500\x00\x00",
	"FH\x01\x82\x00\x0000\x00\x0000",
	"FH\x01\x81\x00\x00\x00\x00\x0300\x7f\x00\x00\x000000000000000000000000000000000000000",
	"FH\x01",
	"FH\x0100000",
	"FH\x01\x860000",
	"FH\x01\x8400000",
	"FH\x01\xe3\x00000",
	"FH\x01\x87\x00\x00\x00\x0000",
	"FH\x01\x86\x00\x01\x00\x0000",
	"FH\x01\x85\x00\x01\x00\x0000",
	"FH\x01\x81\x00\x00\x00\x00\x03000\x03000\x00\x00\x01000000000000000000000000000000000000",
	"FH\x01\x82\x00\x00\x00\x00\x010\x040000\x00\v00000000000\x0000000000000000000000\x00\x00\x00\x00\x00\x00\x00\x0000000000",
}

var eachRightSeeds = []string{
	"0000000000000000",
	"\x14\x00\x00\x00\x00\x00\x00\x00000000000000",
}

// addSeeds adds each seed to f as a []byte input.
func addSeeds(f *testing.F, seeds []string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
}
