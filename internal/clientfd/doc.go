// Package clientfd lets this module's own commands get a held descriptor
// from the root package's Client as a *sockfd.FD, without the *os.File that
// Client.Get returns: fdclient exec only passes descriptors on, and an
// *os.File would register each with the runtime's netpoller (and start the
// netpoller) for nothing. The root package sets Get when it is initialised;
// no public API grows for it.
package clientfd
