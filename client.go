package fdholder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/ctlsock"
	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/sockfd"
)

// Sentinel errors, for errors.Is. Errors from the holder wrap one of these.
var (
	// ErrUnreachable: no holder answers at the socket path, or the
	// connection to it broke.
	ErrUnreachable = errors.New("holder unreachable")

	ErrNotFound           = proto.ErrNotFound           // no entry by that name
	ErrExists             = proto.ErrExists             // the name is held; store with Replace to swap it
	ErrInvalidName        = proto.ErrInvalidName        // the name breaks the naming rule (NameRule)
	ErrNotSocket          = proto.ErrNotSocket          // only sockets can be held
	ErrPermission         = proto.ErrPermission         // the holder's policy refused the request
	ErrTooLarge           = proto.ErrTooLarge           // a value exceeds a protocol limit
	ErrLimit              = proto.ErrLimit              // a holder limit is reached
	ErrUnsupportedVersion = proto.ErrUnsupportedVersion // the holder speaks another protocol version
	ErrBadRequest         = proto.ErrBadRequest         // the holder could not parse the request
	ErrBadDescriptors     = proto.ErrBadDescriptors     // a message carried the wrong number of descriptors
	ErrUnknownOp          = proto.ErrUnknownOp          // the holder does not know the operation
	ErrInternal           = proto.ErrInternal           // the holder failed

	// ErrUntrusted: the holder's socket directory could have been made, or
	// can be changed, by another user, or the holder that answered runs as
	// a uid other than root, the caller's, or the socket directory's owner
	// (when only root could have given that directory away). Nothing was
	// sent to it.
	ErrUntrusted = ctlsock.ErrUntrusted
)

// NameRule says which names the holder accepts.
const NameRule = proto.NameRule

// ValidateName returns nil if name follows NameRule, and an error wrapping
// ErrInvalidName otherwise.
func ValidateName(name string) error { return proto.ValidateName(name) }

// SocketPath returns the holder's socket path as fdholderd and fdclient
// resolve it when none is given: $FDHOLDER_SOCKET, else
// /run/fdholder/fdholder.sock for root, else
// $XDG_RUNTIME_DIR/fdholder/fdholder.sock, else /tmp/fdholder-UID/fdholder.sock.
func SocketPath() string {
	if p := os.Getenv("FDHOLDER_SOCKET"); p != "" {
		return p
	}
	uid := os.Geteuid()
	if uid == 0 {
		return "/run/fdholder/fdholder.sock"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "fdholder", "fdholder.sock")
	}
	return filepath.Join(os.TempDir(), "fdholder-"+strconv.Itoa(uid), "fdholder.sock")
}

// Entry describes a held descriptor.
type Entry struct {
	Name string

	// Network is tcp, tcp6, udp, udp6, unix, unixgram or unixpacket (named
	// by address family, so a dual-stack listener is tcp6), or a descriptive
	// word such as "netlink/raw" for other sockets.
	Network string

	// Address is the local address: host:port, a socket path, @name for an
	// abstract Unix socket, or empty for an unbound one.
	Address string

	Listening bool // listen(2) was called on the socket

	// OwnerUID, OwnerGID and OwnerPID identify the process that stored the
	// entry, as the kernel reported it (SO_PEERCRED).
	OwnerUID, OwnerGID uint32
	OwnerPID           int32

	StoredAt  time.Time
	ExpiresAt time.Time // zero: never

	// HasQueue says Queued and Backlog are set: List fills them for TCP
	// listeners. Queued is the number of connections waiting to be
	// accepted, Backlog the accept queue's limit.
	HasQueue        bool
	Queued, Backlog uint32
}

func entryFrom(e *proto.Entry) Entry {
	return Entry{
		Name: e.Name, Network: e.Network, Address: e.Address, Listening: e.Listening,
		OwnerUID: e.UID, OwnerGID: e.GID, OwnerPID: e.PID,
		StoredAt: e.StoredAt, ExpiresAt: e.ExpiresAt,
		HasQueue: e.HasQueue, Queued: e.Queued, Backlog: e.Backlog,
	}
}

// Client is a connection to a holder. It is safe for concurrent use; its
// requests are served one at a time, so use a Client per goroutine for
// parallel requests. If the connection breaks (say the holder restarted),
// the next request dials again.
type Client struct {
	path string

	mu   sync.Mutex
	conn *proto.BlockingConn // nil until dialled, and after a failure
	in   *replyBuf           // lent by replyBufs from the first request to Close
	out  []byte              // request buffer

	// A get's descriptor is appended to fds, which fetchFD empties again
	// under mu; Get's arrives in spare (the *os.File then takes the
	// descriptor), GetFD's in a new FD, the one it returns: a get allocates
	// only what it returns.
	spare *sockfd.FD
	fds   []*sockfd.FD
}

// replyBuf is a reply buffer: room for the largest reply, a list page.
type replyBuf [proto.MaxReplySize]byte

// replyBufs lends Clients their reply buffers, from the first request to
// Close. A program that dials for each request (a Dial, a Get, a Close)
// would otherwise allocate 64 KiB a Dial, and run the garbage collector
// every few dozen of them.
var replyBufs = sync.Pool{New: func() any { return new(replyBuf) }}

// SystemSocketPath is the socket of the system's holder, the default for
// root and where fdholderd.socket puts it.
const SystemSocketPath = "/run/fdholder/fdholder.sock"

// Dial connects to the holder at path. An empty path means SocketPath(),
// and for a user other than root without $FDHOLDER_SOCKET, if no holder
// answers there (nothing at the path, or a stale socket), the system's
// holder at SystemSocketPath; the error then says where it looked and
// what to set. Failures wrap ErrUnreachable, or ErrPermission when the
// socket's mode or a directory's keeps this user out (the error names the
// permission and the flag that grants it), or ErrUntrusted.
func Dial(ctx context.Context, path string) (*Client, error) {
	var fallback string
	if path == "" {
		path = SocketPath()
		if os.Getenv("FDHOLDER_SOCKET") == "" && path != SystemSocketPath {
			fallback = SystemSocketPath
		}
	}
	c := &Client{path: path, spare: sockfd.New(-1), fds: make([]*sockfd.FD, 0, 1)}
	conn, err := c.dial(ctx)
	if err != nil && fallback != "" && errors.Is(err, ErrUnreachable) && noHolderAt(err) {
		c.path = fallback
		conn, err = c.dial(ctx)
		if err != nil && errors.Is(err, ErrUnreachable) && noHolderAt(err) {
			return nil, fmt.Errorf("%w: no holder at %s (this user's) nor at %s (the system's): start fdholderd, or set $FDHOLDER_SOCKET (fdclient --socket) to the holder's socket",
				ErrUnreachable, path, fallback)
		}
	}
	if err != nil {
		return nil, err
	}
	c.conn = conn
	return c, nil
}

// noHolderAt reports whether a dial failed because no holder is at the
// path at all: no socket file (ENOENT), or one nobody listens on
// (ECONNREFUSED).
func noHolderAt(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}

// dial connects to the holder, and makes sure first that its socket
// directory is one only root, this process's uid (or a user root gave the
// directory to) can change, and then that the holder's listening socket
// was made by one of them: SO_PEERCRED on a client's end gives the
// credentials of the process that called listen(2) (unix(7)). A descriptor
// handed to another user's holder would serve that user's purposes. The
// directory's verdict is reused for up to a second
// (ctlsock.TrustedHoldersCached, docs/security.md); SO_PEERCRED is checked
// on every connection.
func (c *Client) dial(ctx context.Context) (_ *proto.BlockingConn, err error) {
	trusted, err := ctlsock.TrustedHoldersCached(c.path, os.Geteuid())
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", c.path, err)
	}
	conn, err := proto.DialBlocking(ctx, c.path)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("%w: cannot connect to the holder at %s: %s: %w", ErrPermission, c.path, whyDenied(c.path), os.NewSyscallError("connect", syscall.EACCES))
		}
		return nil, fmt.Errorf("%w at %s: %w", ErrUnreachable, c.path, err)
	}
	defer func() {
		if err != nil {
			conn.Close()
		}
	}()
	cred, err := conn.PeerCred()
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %w", ErrUnreachable, c.path, err)
	}
	if err := ctlsock.CheckPeer(c.path, int(cred.Uid), trusted); err != nil {
		return nil, err
	}
	return conn, nil
}

// whyDenied says which permission connect(2) lacked on path (unix(7):
// write on the socket file, search on every directory above it) and what
// grants it.
func whyDenied(path string) string {
	me := "uid " + strconv.Itoa(os.Geteuid())
	// From the root down: access(2) of a directory below one this user
	// may not search fails too, and would name the wrong one.
	var dirs []string
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		dirs = append(dirs, dir)
		if dir == filepath.Dir(dir) {
			break
		}
	}
	for _, dir := range slices.Backward(dirs) {
		if unix.Access(dir, unix.X_OK) != nil {
			return fmt.Sprintf("%s may not enter the directory %s (%s): its owner must let the holder's users search it (chmod o+x, or a .socket unit's DirectoryMode=)", me, dir, describeFile(dir))
		}
	}
	return fmt.Sprintf("%s has no write permission on the socket (%s): the holder admits only its own uid and root unless it runs with --socket-mode 0660 --socket-group GROUP and %s is in GROUP (under systemd: SocketMode= and SocketGroup= in fdholderd.socket); the policy (--policy) then says what that group may do",
		me, describeFile(path), me)
}

// describeFile is a file's mode, owner and group for a message.
func describeFile(path string) string {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return err.Error()
	}
	return fmt.Sprintf("mode %04o, owner uid %d, group gid %d", st.Mode&0o7777, st.Uid, st.Gid)
}

// Path returns the socket path of the holder.
func (c *Client) Path() string { return c.path }

// Close closes the connection. A request made after Close dials again.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.in != nil {
		replyBufs.Put(c.in)
		c.in = nil
	}
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	return err
}

// StoreOptions are the options of Client.Store. The zero value stores a new
// entry that never expires.
type StoreOptions struct {
	// Replace swaps out an entry of the same name (atomically; the holder
	// then closes its old copy). Without it, storing a held name fails with
	// ErrExists.
	Replace bool

	// TTL makes the holder close and forget the entry this long after it is
	// stored; it is rounded up to whole milliseconds. Zero: never.
	TTL time.Duration
}

// CheckTTL returns nil if a store with ttl can be made now: ttl is not
// negative, and the expiry it gives is no later than the latest time the
// protocol carries (April 2262; an error wrapping ErrTooLarge says the
// longest ttl). The holder checks the same when it stores.
func CheckTTL(ttl time.Duration) error {
	if ttl < 0 {
		return fmt.Errorf("ttl %v is negative", ttl)
	}
	return proto.CheckExpiry(time.Now(), ttl)
}

// Store hands the holder a copy of conn's descriptor under name: a
// *net.TCPListener, *net.UnixListener, *net.UDPConn, an *os.File, or
// anything else with a socket behind SyscallConn. conn stays owned by the
// caller: it is safe to close conn after Store returns, and the holder's
// copy keeps the socket open.
func (c *Client) Store(ctx context.Context, name string, conn syscall.Conn, opts StoreOptions) (Entry, error) {
	if err := proto.ValidateName(name); err != nil {
		return Entry{}, fmt.Errorf("store %q: %w", name, err)
	}
	if err := CheckTTL(opts.TTL); err != nil {
		return Entry{}, fmt.Errorf("store %q: %w", name, err)
	}
	req := proto.Request{Op: proto.OpStore, Name: name, TTL: opts.TTL.Round(time.Millisecond)}
	if req.TTL < opts.TTL {
		req.TTL += time.Millisecond
	}
	if opts.Replace {
		req.Flags = proto.FlagReplace
	}
	rep, fds, err := c.roundTrip(ctx, &req, attach{conn: conn}, false)
	sockfd.CloseAll(fds) // a store reply carries none; a holder that sends some anyway leaks nothing
	if err != nil {
		return Entry{}, err
	}
	return entryFrom(&rep.Entry), nil
}

// Get returns a duplicate of the descriptor held under name, as a new
// *os.File that the caller owns and must close; the holder keeps its copy.
// Use net.FileListener or net.FilePacketConn to turn it into a listener.
func (c *Client) Get(ctx context.Context, name string) (*os.File, Entry, error) {
	return c.fetch(ctx, proto.OpGet, name)
}

// Take is Get, and removes the entry in the same step: the holder hands over
// its copy. The caller owns the returned *os.File and must close it.
func (c *Client) Take(ctx context.Context, name string) (*os.File, Entry, error) {
	return c.fetch(ctx, proto.OpTake, name)
}

func (c *Client) fetch(ctx context.Context, op proto.Op, name string) (*os.File, Entry, error) {
	fd, e, err := c.fetchFD(ctx, op, name, true)
	if err != nil {
		return nil, Entry{}, err
	}
	return fd.File("fdholder:" + name), e, nil
}

// fetchFD is fetch without the *os.File: the descriptor stays out of the
// runtime's netpoller, for a caller that only passes it on. With spare the
// result is c.spare, which the caller must empty (File, Close) before the
// next request; without, a new FD the caller owns.
func (c *Client) fetchFD(ctx context.Context, op proto.Op, name string, spare bool) (*sockfd.FD, Entry, error) {
	if err := proto.ValidateName(name); err != nil {
		return nil, Entry{}, fmt.Errorf("%s %q: %w", op, name, err)
	}
	req := proto.Request{Op: op, Name: name}
	// fds is c.fds: take its descriptor before the next request may
	// reuse it, under the same lock.
	c.mu.Lock()
	rep, fds, err := c.roundTripLocked(ctx, &req, attach{fetch: true, spare: spare}, op == proto.OpGet)
	var fd *sockfd.FD
	n := len(fds)
	if n == 1 {
		fd = fds[0]
	} else {
		sockfd.CloseAll(fds)
	}
	clear(fds) // c.fds keeps no FD the caller now owns
	c.mu.Unlock()
	if err != nil {
		return nil, Entry{}, err
	}
	if n != 1 {
		return nil, Entry{}, fmt.Errorf("%s %q: %w: the reply carried %d descriptors, not one", op, name, ErrBadDescriptors, n)
	}
	return fd, entryFrom(&rep.Entry), nil
}

// Delete removes the entry held under name; the holder closes its copy.
func (c *Client) Delete(ctx context.Context, name string) error {
	if err := proto.ValidateName(name); err != nil {
		return fmt.Errorf("delete %q: %w", name, err)
	}
	_, fds, err := c.roundTrip(ctx, &proto.Request{Op: proto.OpDelete, Name: name}, attach{}, false)
	sockfd.CloseAll(fds)
	return err
}

// List returns every held entry in name order, fetched a page at a time.
// Entries stored or removed while List runs may or may not appear.
func (c *Client) List(ctx context.Context) ([]Entry, error) {
	var all []Entry
	after := ""
	for {
		rep, fds, err := c.roundTrip(ctx, &proto.Request{Op: proto.OpList, Name: after}, attach{}, true)
		sockfd.CloseAll(fds)
		if err != nil {
			return nil, err
		}
		for i := range rep.Entries {
			all = append(all, entryFrom(&rep.Entries[i]))
		}
		if rep.Flags&proto.FlagMore == 0 || len(rep.Entries) == 0 {
			return all, nil
		}
		after = rep.Entries[len(rep.Entries)-1].Name
	}
}

// attach is what a request carries: the descriptor of conn (a store), fds
// (a load), or nothing. Either stays owned by the caller. fetch says the
// reply's descriptors may be appended to c.fds, which the caller empties
// under c.mu (see fetchFD); spare, that the first may arrive in c.spare.
type attach struct {
	conn         syscall.Conn
	fds          []*sockfd.FD
	fetch, spare bool
}

// roundTrip sends req with att and returns the reply and the descriptors it
// carried, which the caller owns; when it returns an error it has closed
// them and returns none. An error
// reply comes back as an error wrapping its sentinel. idempotent allows one
// retry on a fresh connection when a reused connection turns out to be
// broken.
func (c *Client) roundTrip(ctx context.Context, req *proto.Request, att attach, idempotent bool) (proto.Reply, []*sockfd.FD, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.roundTripLocked(ctx, req, att, idempotent)
}

// roundTripLocked is roundTrip with c.mu held by the caller.
func (c *Client) roundTripLocked(ctx context.Context, req *proto.Request, att attach, idempotent bool) (proto.Reply, []*sockfd.FD, error) {
	out, err := proto.AppendRequest(c.out[:0], req)
	if err != nil {
		return proto.Reply{}, nil, fmt.Errorf("%s: %w", what(req), err)
	}
	c.out = out
	for attempt := 0; ; attempt++ {
		reused := c.conn != nil
		if !reused {
			if c.conn, err = c.dial(ctx); err != nil {
				return proto.Reply{}, nil, fmt.Errorf("%s: %w", what(req), err)
			}
		}
		rep, fds, sent, err := c.exchange(ctx, out, att, req.Name)
		if err == nil {
			if err := rep.Err(); err != nil {
				sockfd.CloseAll(fds)
				return rep, nil, fmt.Errorf("%s: %w", what(req), err)
			}
			if rep.Op != req.Op {
				sockfd.CloseAll(fds)
				c.drop()
				return rep, nil, fmt.Errorf("%s: %w: reply to %s", what(req), ErrBadRequest, rep.Op)
			}
			return rep, fds, nil
		}
		c.drop()
		if ctx.Err() != nil {
			return proto.Reply{}, nil, fmt.Errorf("%s: %w", what(req), ctx.Err())
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The connection's deadline is ctx's, which has passed: its
			// timer may just not have marked ctx done yet.
			return proto.Reply{}, nil, fmt.Errorf("%s: %w", what(req), context.DeadlineExceeded)
		}
		var pe *proto.Error
		if errors.As(err, &pe) {
			// The reply was malformed or of another protocol version.
			return proto.Reply{}, nil, fmt.Errorf("%s: %w", what(req), err)
		}
		// A broken reused connection (the holder restarted, say) earns one
		// retry on a fresh one, if the request surely was not served or
		// serving it twice does no harm.
		if reused && attempt == 0 && (!sent || idempotent) {
			continue
		}
		return proto.Reply{}, nil, fmt.Errorf("%s: %w at %s: %w", what(req), ErrUnreachable, c.path, err)
	}
}

// what names a request in an error: the operation, and the name for those
// that take one. It is built only when an error needs it.
func what(req *proto.Request) string {
	switch req.Op {
	case proto.OpStore, proto.OpGet, proto.OpTake, proto.OpDelete:
		return req.Op.String() + " " + strconv.Quote(req.Name)
	}
	return req.Op.String()
}

// exchange writes one request and reads its reply; sent reports whether the
// request reached the holder's socket. An entry named name in the reply
// gets that string (proto.DecodeReplyName).
func (c *Client) exchange(ctx context.Context, out []byte, att attach, name string) (rep proto.Reply, fds []*sockfd.FD, sent bool, err error) {
	pc := c.conn
	stop := c.watch(ctx)
	defer func() {
		if stop() && err == nil {
			// ctx ended just as the reply arrived: the reply stands, but
			// the connection is shut down.
			c.drop()
		}
	}()

	if att.conn != nil {
		err = pc.SendConn(out, att.conn)
	} else {
		err = pc.SendFDs(out, att.fds)
	}
	if err != nil {
		return rep, nil, false, err
	}
	var spare *sockfd.FD
	if att.fetch {
		fds = c.fds[:0]
		if att.spare {
			spare = c.spare
		}
	}
	if c.in == nil {
		c.in = replyBufs.Get().(*replyBuf)
	}
	n, fds, err := pc.RecvFDs(c.in[:], fds, spare)
	if err != nil {
		return rep, nil, true, err
	}
	rep, err = proto.DecodeReplyName(c.in[:n], name)
	if err != nil {
		sockfd.CloseAll(fds)
		return rep, nil, true, err
	}
	return rep, fds, true, nil
}

// watch makes ctx's deadline the connection's, and its cancellation a
// shutdown(2) of the connection that wakes a blocked call, until the
// returned function is called; that reports whether the cancellation fired
// (the connection is then shut down). A ctx that can never be cancelled
// (context.Background) costs nothing here.
//
// The returned function waits for a cancellation that fired meanwhile to
// finish: the connection must not be closed under it.
func (c *Client) watch(ctx context.Context) (stop func() bool) {
	d, _ := ctx.Deadline() // the zero time when ctx has none: no deadline
	pc := c.conn
	pc.SetDeadline(d)
	if ctx.Done() == nil {
		return notFired
	}
	fired := make(chan struct{})
	unwatch := context.AfterFunc(ctx, func() {
		pc.Shutdown()
		close(fired)
	})
	return func() bool {
		if unwatch() {
			return false
		}
		<-fired
		return true
	}
}

func notFired() bool { return false }

// drop closes a connection that failed, so the next request dials again.
func (c *Client) drop() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}
