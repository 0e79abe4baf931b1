// Package version holds the version both programs print for --version. A
// release build stamps it with the linker (the Makefile passes
// -ldflags "-X github.com/fdholder/fdholder/internal/version.Version=..."),
// taken from the top entry of deploy/debian/changelog; a plain "go build"
// leaves it "devel".
package version
