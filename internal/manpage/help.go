package manpage

import (
	"regexp"
	"strings"
)

// A help text is read as the programs write them: column-0 paragraphs,
// one-line column-0 headings ending in ":" ("Options:"), and indented
// blocks under them. In a block, a line at the block's indentation starts
// an item when it has a tag and a description separated by two or more
// spaces ("--socket PATH   the control socket"), is a numbered step ("1. ..."), or has lines indented at least itemIndent
// deeper under it ("listen NAME ..." over its description). Other lines
// are text; lines just a little deeper under text (an example) are kept
// as they are.

// itemIndent is how much deeper than its tag a description must start for
// a tag alone on its line to be read as an item.
const itemIndent = 4

// section is a part of a help text under one heading ("" for the part
// before the first heading).
type section struct {
	title string
	lines []string
}

var (
	gap      = regexp.MustCompile(`\S( {2,})\S`)
	numbered = regexp.MustCompile(`^(\d+\.) +(.*)$`)
)

// flagRE finds the flags a help text names: a dash and a letter after
// white space, "[", "(", "|" or a quote ("get-or-create" is no flag).
var flagRE = regexp.MustCompile(`(?:^|[\s\[(|"])(--?[a-z][a-z0-9-]*)`)

// Flags returns the flags a help text names, each once, in the order they
// first appear: what a man page and a shell completion must both offer.
// What follows " -- " on a line is another program's command line (an
// example's "exec web -- nginx -c FILE"), whose flags are not these.
func Flags(help string) []string {
	var flags []string
	seen := map[string]bool{}
	for _, line := range strings.Split(help, "\n") {
		line, _, _ = strings.Cut(line, " -- ")
		for _, m := range flagRE.FindAllStringSubmatch(line, -1) {
			if !seen[m[1]] {
				seen[m[1]] = true
				flags = append(flags, m[1])
			}
		}
	}
	return flags
}

// splitSections splits a help text at its headings. The Usage heading may
// carry the first synopsis line ("Usage: prog ..."); that line stays in
// the section, indented like the rest.
func splitSections(text string) []section {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	secs := []section{{}}
	for i, l := range lines {
		prevBlank := i == 0 || strings.TrimSpace(lines[i-1]) == ""
		nextBlankOrIndented := i+1 == len(lines) || lines[i+1] == "" || indent(lines[i+1]) > 0
		switch {
		case strings.HasPrefix(l, "Usage:") && prevBlank:
			secs = append(secs, section{title: "Usage"})
			if rest := strings.TrimPrefix(l, "Usage:"); strings.TrimSpace(rest) != "" {
				secs[len(secs)-1].lines = append(secs[len(secs)-1].lines, strings.Repeat(" ", len("Usage:"))+rest)
			}
		case indent(l) == 0 && strings.HasSuffix(l, ":") && len(l) <= 50 && prevBlank && nextBlankOrIndented:
			secs = append(secs, section{title: strings.TrimSuffix(l, ":")})
		default:
			secs[len(secs)-1].lines = append(secs[len(secs)-1].lines, l)
		}
	}
	return secs
}

func indent(l string) int {
	return len(l) - len(strings.TrimLeft(l, " "))
}

// node is one piece of a block: a paragraph of text, an item with a tag
// and a body, or lines kept verbatim.
type node struct {
	kind  nodeKind
	text  []string // paragraph and verbatim lines (verbatim: relative indentation kept)
	tag   string   // item
	body  []node   // item
	inset bool     // paragraph: indented under the section (a block, not column 0)
}

type nodeKind int

const (
	paragraph nodeKind = iota
	item
	verbatim
)

// parseBlock parses lines (of one section, or one item's description) into
// nodes. Blank lines end paragraphs.
func parseBlock(lines []string) []node {
	var nodes []node
	for i := 0; i < len(lines); {
		l := lines[i]
		if strings.TrimSpace(l) == "" {
			i++
			continue
		}
		ind := indent(l)
		// The line's children: the following lines indented deeper, blank
		// lines included when more deeper lines follow.
		j := i + 1
		for k := i + 1; k < len(lines); k++ {
			if strings.TrimSpace(lines[k]) == "" {
				continue
			}
			if indent(lines[k]) <= ind {
				break
			}
			j = k + 1
		}
		children := lines[i+1 : j]
		text := strings.TrimSpace(l)
		childIndent := minIndent(children)
		switch {
		case gap.MatchString(text):
			tag, first := text, ""
			if m := gap.FindStringSubmatchIndex(text); m != nil {
				tag, first = text[:m[2]], text[m[3]:]
			}
			body := children
			if first != "" {
				col := ind + len(text) - len(first)
				body = append([]string{strings.Repeat(" ", col) + first}, children...)
			}
			nodes = append(nodes, node{kind: item, tag: tag, body: parseBlock(body)})
		case numbered.MatchString(text):
			m := numbered.FindStringSubmatch(text)
			col := ind + len(text) - len(m[2])
			body := append([]string{strings.Repeat(" ", col) + m[2]}, children...)
			nodes = append(nodes, node{kind: item, tag: m[1], body: parseBlock(body)})
		case len(children) > 0 && childIndent >= ind+itemIndent:
			// The description may start on the tag's line, at the
			// column of the lines under it ("--names print the names"
			// over "        completion").
			tag, body := text, children
			if c := childIndent - ind; c < len(text) && text[c-1] == ' ' && text[c] != ' ' {
				tag = strings.TrimSpace(text[:c])
				body = append([]string{strings.Repeat(" ", childIndent) + text[c:]}, children...)
			}
			nodes = append(nodes, node{kind: item, tag: tag, body: parseBlock(body)})
		default:
			// Text: it continues the paragraph before it if that ended
			// on the line above.
			inset := ind > 0
			if continues(lines, i, nodes) && nodes[len(nodes)-1].inset == inset {
				nodes[len(nodes)-1].text = append(nodes[len(nodes)-1].text, text)
			} else {
				nodes = append(nodes, node{kind: paragraph, text: []string{text}, inset: inset})
			}
			if len(children) > 0 && ind == 0 {
				// A column-0 paragraph that introduces a block
				// ("Limits (...):" over its flags).
				nodes = append(nodes, parseBlock(children)...)
				nodes = append(nodes, node{kind: paragraph})
			} else if len(children) > 0 {
				nodes = append(nodes, node{kind: verbatim, text: dedent(children)})
				// A paragraph never continues past its example.
				nodes = append(nodes, node{kind: paragraph})
			}
		}
		i = j
	}
	// Drop the empty paragraphs that only separated.
	out := nodes[:0]
	for _, n := range nodes {
		if n.kind == paragraph && len(n.text) == 0 {
			continue
		}
		out = append(out, n)
	}
	return out
}

// continues reports whether line i continues the paragraph that nodes end
// with: that paragraph's text ended on the line just above, at the same
// indentation.
func continues(lines []string, i int, nodes []node) bool {
	n := len(nodes)
	return n > 0 && nodes[n-1].kind == paragraph && len(nodes[n-1].text) > 0 &&
		i > 0 && strings.TrimSpace(lines[i-1]) != "" && indent(lines[i-1]) == indent(lines[i])
}

func minIndent(lines []string) int {
	m := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if d := indent(l); m < 0 || d < m {
			m = d
		}
	}
	return m
}

func dedent(lines []string) []string {
	m := minIndent(lines)
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			out = append(out, "")
			continue
		}
		out = append(out, l[m:])
	}
	// No trailing blank lines.
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}
