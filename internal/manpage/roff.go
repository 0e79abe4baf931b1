package manpage

import (
	"fmt"
	"strings"
	"unicode"
)

// Page is what a template is filled with.
type Page struct {
	Help    string // the program's --help output
	Version string // for .TH
	Date    string // for .TH, YYYY-MM-DD
}

// Synopsis renders the Usage section of the help text: one line per
// synopsis, in no-fill mode so that the continuation lines keep their
// alignment.
func Synopsis(help string) string {
	for _, s := range splitSections(help) {
		if s.title == "Usage" {
			var b strings.Builder
			b.WriteString(".nf\n")
			lines := s.lines
			for i, l := range lines {
				if strings.TrimSpace(l) == "" {
					lines = lines[:i] // the synopsis ends at the first blank line
					break
				}
			}
			for _, l := range dedent(lines) {
				b.WriteString(escapeLine(l) + "\n")
			}
			b.WriteString(".fi\n")
			return b.String()
		}
	}
	return ""
}

// Body renders everything of the help text but the synopsis: the text
// before and right after Usage as DESCRIPTION, then one .SH per heading.
func Body(help string) string {
	var b strings.Builder
	b.WriteString(".SH DESCRIPTION\n")
	for _, s := range splitSections(help) {
		lines := s.lines
		switch s.title {
		case "":
		case "Examples":
			b.WriteString(".SH EXAMPLES\n")
			renderNodes(&b, []node{{kind: verbatim, text: dedent(lines)}}, false)
			continue
		case "Usage":
			// Past the synopsis, the section's text is the description.
			for len(lines) > 0 && strings.TrimSpace(lines[0]) != "" {
				lines = lines[1:]
			}
		default:
			title, rest, _ := strings.Cut(s.title, ", ")
			fmt.Fprintf(&b, ".SH %s\n", escapeLine(strings.ToUpper(title)))
			if rest != "" {
				r := []rune(rest)
				b.WriteString(".PP\n" + escapeLine(string(unicode.ToUpper(r[0]))+string(r[1:])+":") + "\n")
			}
		}
		renderNodes(&b, parseBlock(lines), false)
	}
	return b.String()
}

// renderNodes writes nodes; inItem is set inside an item's description,
// where a paragraph after the first continues the item's indentation
// (.IP) instead of starting at the margin (.PP).
func renderNodes(b *strings.Builder, nodes []node, inItem bool) {
	for i, n := range nodes {
		switch n.kind {
		case paragraph:
			if !inItem {
				b.WriteString(".PP\n")
			} else if i > 0 {
				b.WriteString(".IP\n")
			}
			for _, l := range n.text {
				b.WriteString(escapeLine(l) + "\n")
			}
		case verbatim:
			b.WriteString(".RS\n.nf\n")
			for _, l := range n.text {
				b.WriteString(escapeLine(l) + "\n")
			}
			b.WriteString(".fi\n.RE\n")
		case item:
			nested := inItem
			if nested && (i == 0 || nodes[i-1].kind != item) {
				b.WriteString(".RS\n")
			}
			b.WriteString(".TP\n" + tag(n.tag) + "\n")
			renderNodes(b, n.body, true)
			if nested && (i+1 == len(nodes) || nodes[i+1].kind != item) {
				b.WriteString(".RE\n")
				if i+1 < len(nodes) {
					b.WriteString(".IP\n")
				}
			}
		}
	}
}

// tag renders an item's tag: flags and commands in bold, upper-case
// placeholders (PATH, DUR) in italics.
func tag(s string) string {
	words := strings.Split(s, " ")
	for i, w := range words {
		e := escapeWord(w)
		switch {
		case i == 0 && isWordy(w), strings.HasPrefix(w, "-"):
			words[i] = `\fB` + e + `\fR`
		case isPlaceholder(w):
			words[i] = `\fI` + e + `\fR`
		default:
			words[i] = e
		}
	}
	return escapeLead(strings.Join(words, " "))
}

func isWordy(w string) bool {
	for _, r := range w {
		if !(r >= 'a' && r <= 'z' || r == '-') {
			return false
		}
	}
	return w != ""
}

func isPlaceholder(w string) bool {
	w = strings.Trim(w, "[].,")
	if len(w) < 2 {
		return false
	}
	for _, r := range w {
		if !(r >= 'A' && r <= 'Z' || r == '_') {
			return false
		}
	}
	return true
}

// escapeLine escapes one line of text for roff: backslashes, the minus
// sign of options (so that they can be copied from the page), and a
// leading control character.
func escapeLine(l string) string {
	words := strings.Split(l, " ")
	for i, w := range words {
		words[i] = escapeWord(w)
	}
	return escapeLead(strings.Join(words, " "))
}

// escapeWord escapes a backslash, and writes the hyphens of a word that
// starts with one (an option) as minus signs.
func escapeWord(w string) string {
	w = strings.ReplaceAll(w, `\`, `\e`)
	if strings.HasPrefix(strings.TrimLeft(w, `"'([`), "-") {
		w = strings.ReplaceAll(w, "-", `\-`)
	}
	return w
}

// escapeLead keeps a line that starts with . or ' from being a request.
func escapeLead(l string) string {
	if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
		return `\&` + l
	}
	return l
}
