// Package repo tests the repository's own hygiene scripts under .ci: that
// the check CI and the pre-commit hook run refuses a committed ELF file.
// The package has no code of its own: everything is in its _test.go files.
package repo
