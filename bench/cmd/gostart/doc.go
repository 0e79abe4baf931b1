// Command gostart is the smallest Go program: the suite times it as the
// floor of any Go command's start-up (runtime initialisation, page faults
// of the binary), to compare fdclient's whole-process time against.
package main
