// Package manpage turns the --help text a program prints into the body of
// its man page (roff, man(7) macros), so that the man pages are generated
// from the very texts the programs print and cannot drift from them. The
// parts only a man page has (NAME, FILES, SEE ALSO, fdholder-policy(5))
// live in templates under deploy/man; mangen fills them in.
package manpage
