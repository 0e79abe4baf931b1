package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/fdholder/fdholder/internal/manpage"
)

func main() {
	version := flag.String("version", "", "the version, for .TH")
	date := flag.String("date", "", "the date, for .TH (YYYY-MM-DD)")
	bin := flag.String("bin", "bin", "the directory of the built programs")
	out := flag.String("out", "bin/man", "where to write the pages")
	flag.Parse()
	if err := manpage.Generate(flag.Args(), *bin, *out, *version, *date); err != nil {
		fmt.Fprintf(os.Stderr, "mangen: %v\n", err)
		os.Exit(1)
	}
}
