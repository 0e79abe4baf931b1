// Package holdertest runs a real holder (internal/holder's Server on a real
// Unix socket) inside a test process, for tests of code that talks to one,
// and provides RawConn, a peer that sends the holder any bytes with any
// descriptors, as a broken or hostile client would.
//
// It is imported by tests only.
package holdertest
