// Command mangen writes the man pages: it fills each template in deploy/man
// with the --help text the built program prints (see package manpage).
//
//	mangen -version V -date YYYY-MM-DD -bin DIR -out DIR TEMPLATE...
//
// "make man" runs it on the programs "make" built.
package main
