package manpage

import (
	"fmt"
	"strings"
)

// Fill fills a man page template: roff with these placeholders, each on a
// line of its own, and @VERSION@ and @DATE@ anywhere:
//
//	@SYNOPSIS@   the Usage section of p.Help
//	@BODY@       the rest of p.Help (DESCRIPTION, then a section per heading)
//	@FILE name@  the file name, verbatim, read with readFile
func Fill(tmpl string, p Page, readFile func(name string) ([]byte, error)) (string, error) {
	var b strings.Builder
	for _, l := range strings.SplitAfter(tmpl, "\n") {
		trimmed := strings.TrimSpace(l)
		switch {
		case trimmed == "@SYNOPSIS@":
			if p.Help == "" {
				return "", fmt.Errorf("@SYNOPSIS@ without a help text")
			}
			b.WriteString(Synopsis(p.Help))
		case trimmed == "@BODY@":
			if p.Help == "" {
				return "", fmt.Errorf("@BODY@ without a help text")
			}
			b.WriteString(Body(p.Help))
		case strings.HasPrefix(trimmed, "@FILE ") && strings.HasSuffix(trimmed, "@"):
			name := strings.TrimSuffix(strings.TrimPrefix(trimmed, "@FILE "), "@")
			data, err := readFile(name)
			if err != nil {
				return "", err
			}
			b.WriteString(".nf\n")
			for _, fl := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
				b.WriteString(escapeLine(fl) + "\n")
			}
			b.WriteString(".fi\n")
		default:
			l = strings.ReplaceAll(l, "@VERSION@", p.Version)
			b.WriteString(strings.ReplaceAll(l, "@DATE@", p.Date))
		}
	}
	return b.String(), nil
}
