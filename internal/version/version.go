package version

// Version is the release, set at link time; "devel" for a plain go build.
// It is a variable, not a constant, because the linker's -X sets only
// string variables.
var Version = "devel"

// Line is what "PROG --version" prints: "PROG VERSION" and a newline.
func Line(prog string) string {
	return prog + " " + Version + "\n"
}
