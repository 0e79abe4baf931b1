// Package sockfd owns socket descriptors that must stay out of the Go
// runtime's netpoller, and reads what the kernel knows about them.
//
// Why not *os.File: os.NewFile registers a non-blocking descriptor with the
// runtime's epoll instance. For a held listener that would wake the holder
// each time a connection arrives for the service that accepts on it, and
// would cost an epoll registration per held entry. Nor may the holder make
// the descriptor blocking: O_NONBLOCK belongs to the open file description
// shared with every process that holds the socket. An *FD therefore owns the
// raw descriptor itself and changes none of its flags.
package sockfd
