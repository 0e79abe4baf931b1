package ctlsock

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/sockfd"
)

// MaxPathLen is the longest socket path, in bytes: sun_path holds 108 bytes
// including the terminating NUL (unix(7)).
const MaxPathLen = 107

// lockWait bounds the wait for the directory lock held by another holder
// that is setting up or removing its socket in the same directory; both
// take a moment, so a longer wait means something is stuck.
const lockWait = 5 * time.Second

// probeTimeout bounds the connect(2) that asks whether a holder is serving.
// A Unix connect completes or fails at once unless the listener's backlog is
// full, so the bound only matters for a stuck holder.
const probeTimeout = 2 * time.Second

// HeldError is returned by Listen when a live holder answers on the path.
type HeldError struct {
	Path string
	PID  int32 // the serving process as the kernel reports it (SO_PEERCRED); 0 if in another pid namespace
}

func (e *HeldError) Error() string {
	if e.PID == 0 {
		// SO_PEERCRED reports 0 for a process outside this pid namespace.
		return fmt.Sprintf("a holder is already serving on %s (its pid is not visible from here)", e.Path)
	}
	return fmt.Sprintf("a holder is already serving on %s (pid %d)", e.Path, e.PID)
}

// Socket is a control socket bound by Listen.
type Socket struct {
	// Path is the socket file.
	Path string

	// Listener is the listening socket. Listen hands it to the caller, who
	// owns it and must close it (holder.Server.Serve takes it over). Closing
	// it does not remove the file: call RemoveFile for that.
	Listener *net.UnixListener

	// Replaced reports that a stale socket file was at Path and was replaced.
	Replaced bool

	dev, ino uint64 // identity of the file this process created
}

// DefaultMode is the control socket's mode without Options.Mode: only the
// holder's own uid (and root) may connect.
const DefaultMode fs.FileMode = 0o600

// Options says who may connect to the socket Listen creates. The zero value
// is valid.
type Options struct {
	// Mode is the socket file's permission bits; connect(2) needs write
	// permission on it (unix(7)). Zero: DefaultMode.
	Mode fs.FileMode
	// GID, if not negative, is the group the socket file is given (chown(2));
	// with Mode 0660 that group's members may connect. -1 leaves the
	// creator's group.
	GID int
}

// Listen is ListenWith and the default options: mode 0600, the creator's
// group.
func Listen(ctx context.Context, path string) (*Socket, error) {
	return ListenWith(ctx, path, Options{GID: -1})
}

// ListenWith creates the directory of path if missing (mode 0755), checks
// that nobody but root and this process's uid can change it (CheckDir), and binds
// a new AF_UNIX SOCK_SEQPACKET listener at path, with opts' mode and group
// from its first moment there.
//
// If path is a socket on which a holder answers, Listen returns a
// *HeldError naming its pid. If it is a socket nobody listens on (connect(2)
// fails with ECONNREFUSED: the file of a holder that died), it is replaced.
// If it is anything else (a regular file, a directory, a symbolic link, a
// socket of another type), Listen fails and leaves it untouched.
//
// Why a private directory: bind(2) creates the file with the mode
// 0777 &^ umask, and chmod(2) and chown(2) can only follow. Binding inside a
// fresh 0700 directory (os.MkdirTemp) that nobody else can enter, then
// chown and chmod, then rename(2) onto path, means the file is never reachable with a looser
// mode, and never needs a process-wide umask change. rename(2) keeps the
// inode, and with it the listening socket bound to it.
//
// Why a directory lock: two holders starting at once could each find a
// stale file and each rename over it, and the loser would serve a socket
// nobody can reach. Listen and RemoveFile take flock(2) on the directory
// for the few system calls of the check and the swap, so that whoever comes
// second finds the first one's socket live.
func ListenWith(ctx context.Context, path string, opts Options) (_ *Socket, err error) {
	mode := opts.Mode
	if mode == 0 {
		mode = DefaultMode
	}
	if mode&^fs.ModePerm != 0 {
		return nil, fmt.Errorf("listen %s: socket mode %#o has bits other than permissions", path, mode)
	}
	if path == "" {
		return nil, errors.New("listen: empty socket path")
	}
	if len(path) > MaxPathLen {
		return nil, fmt.Errorf("listen %s: the path is %d bytes; a Unix socket path is at most %d (unix(7))", path, len(path), MaxPathLen)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if err := CheckDir(dir, os.Geteuid()); err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	unlock, err := lockDir(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	defer unlock()

	stale, err := check(ctx, path)
	if err != nil {
		return nil, err
	}

	tmpdir, err := os.MkdirTemp(dir, ".fdh")
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	defer os.Remove(tmpdir) // empty by then: the socket was renamed out or removed
	tmp := filepath.Join(tmpdir, "s")
	if len(tmp) > MaxPathLen {
		return nil, fmt.Errorf("listen %s: the temporary name %s is longer than %d bytes (unix(7)); use a shorter path", path, tmp, MaxPathLen)
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: tmp, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	// The file is removed by RemoveFile, after an identity check; the
	// listener only knows the temporary name anyway.
	ln.SetUnlinkOnClose(false)
	defer func() {
		if err != nil {
			ln.Close()
			os.Remove(tmp)
		}
	}()
	if opts.GID >= 0 {
		if err := os.Lchown(tmp, -1, opts.GID); err != nil {
			return nil, fmt.Errorf("listen %s: socket group %d: %w", path, opts.GID, err)
		}
	}
	// After chown, which may clear set-id bits (none here), so the mode is
	// exactly what was asked for.
	if err := os.Chmod(tmp, mode); err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	dev, ino, err := identity(tmp)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	return &Socket{Path: path, Listener: ln, Replaced: stale, dev: dev, ino: ino}, nil
}

// check decides what to do about whatever is at path: nothing there, or a
// stale socket to replace (stale), or an error to refuse with: a
// *HeldError when a holder answers.
func check(ctx context.Context, path string) (stale bool, err error) {
	stale, err = Stale(ctx, "unixpacket", path)
	var inUse *InUseError
	if errors.As(err, &inUse) {
		return false, &HeldError{Path: inUse.Path, PID: inUse.PID}
	}
	return stale, err
}

// InUseError is Stale's error when a process answers on the socket file.
type InUseError struct {
	Path string
	PID  int32 // the serving process (SO_PEERCRED); 0 if in another pid namespace
}

func (e *InUseError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("another process serves on %s (its pid is not visible from here)", e.Path)
	}
	return fmt.Sprintf("another process serves on %s (pid %d)", e.Path, e.PID)
}

// Stale tells what a new listener of network ("unixpacket" or "unix") finds
// at path: nothing (false, nil); a socket file nobody listens on, which it
// may replace (true, nil: connect(2) fails with ECONNREFUSED, so whoever
// bound it is gone, unix(7)); or a reason to leave path alone: an
// *InUseError when a process answers, or an error saying that the path is
// not a socket, is a socket of another type in use, or cannot be probed.
// It is the one owner of that decision, for the control socket (Listen)
// and the metrics' Unix socket alike.
func Stale(ctx context.Context, network, path string) (bool, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("listen %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return false, fmt.Errorf("listen %s: the path exists and is %w (%s); refusing to replace it", path, sockfd.ErrNotSocket, sockfd.DescribeType(fi.Mode()))
	}
	pid, err := probe(ctx, network, path)
	switch {
	case err == nil:
		return false, &InUseError{Path: path, PID: pid}
	case errors.Is(err, syscall.ECONNREFUSED):
		// Nobody is bound to the file's inode: its owner is gone.
		return true, nil
	case errors.Is(err, syscall.ENOENT):
		return false, nil // removed in the meantime
	case errors.Is(err, syscall.EPROTOTYPE):
		return false, fmt.Errorf("listen %s: a socket of another type is in use at the path; refusing to replace it", path)
	default:
		return false, fmt.Errorf("listen %s: cannot tell whether a process serves the path; refusing to replace it: %w", path, err)
	}
}

// Probe connects to the SOCK_SEQPACKET socket at path and returns the pid of
// the process that serves it (SO_PEERCRED, unix(7)), then hangs up. The
// error wraps the errno of connect(2): ECONNREFUSED when nobody listens.
func Probe(ctx context.Context, path string) (int32, error) {
	return probe(ctx, "unixpacket", path)
}

// probe is Probe on network: "unixpacket" or "unix" (SOCK_STREAM).
func probe(ctx context.Context, network, path string) (int32, error) {
	d := net.Dialer{Timeout: probeTimeout}
	c, err := d.DialContext(ctx, network, path)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	rc, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, os.NewSyscallError("getsockopt SO_PEERCRED", cerr)
	}
	return cred.Pid, nil
}

// Identity returns the device and inode of the socket file Listen
// created, for Adopt in the binary an upgrade executes.
func (s *Socket) Identity() (dev, ino uint64) { return s.dev, s.ino }

// Adopt returns the Socket of a file that Listen created before an upgrade
// executed this binary in the same process (dev and ino from Identity), on
// the listener passed across, so that RemoveFile works as if this process
// image had created it.
func Adopt(path string, dev, ino uint64, ln *net.UnixListener) *Socket {
	return &Socket{Path: path, Listener: ln, dev: dev, ino: ino}
}

// RemoveFile removes the socket file if it is still the one Listen created
// (same device and inode), and reports whether it did. A successor that
// replaced it after this process stopped listening keeps its socket.
func (s *Socket) RemoveFile() (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), lockWait)
	defer cancel()
	unlock, err := lockDir(ctx, filepath.Dir(s.Path))
	if err != nil {
		return false, fmt.Errorf("remove %s: %w", s.Path, err)
	}
	defer unlock()
	dev, ino, err := identity(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("remove %s: %w", s.Path, err)
	}
	if dev != s.dev || ino != s.ino {
		return false, nil
	}
	if err := os.Remove(s.Path); err != nil {
		return false, fmt.Errorf("remove %s: %w", s.Path, err)
	}
	return true, nil
}

func identity(path string) (dev, ino uint64, err error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return 0, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, fmt.Errorf("stat %s: no device and inode", path)
	}
	return st.Dev, st.Ino, nil
}

// lockDir takes an exclusive flock(2) on dir and returns its release. It
// polls with LOCK_NB so that it honours ctx and gives up after lockWait.
// The lock is advisory: it orders holders among themselves only.
func lockDir(ctx context.Context, dir string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	deadline := time.Now().Add(lockWait)
	for {
		var ferr error
		if err := rc.Control(func(fd uintptr) {
			ferr = unix.Flock(int(fd), unix.LOCK_EX|unix.LOCK_NB)
		}); err != nil {
			f.Close()
			return nil, err
		}
		if ferr == nil {
			return func() { f.Close() }, nil // closing the last descriptor releases the lock
		}
		if !errors.Is(ferr, unix.EWOULDBLOCK) && !errors.Is(ferr, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", dir, os.NewSyscallError("flock", ferr))
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s: another process has held the directory lock for %v", dir, lockWait)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", dir, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// IsControlListener reports whether c is a listening AF_UNIX SOCK_SEQPACKET
// socket, the kind a holder serves. It asks the kernel (getsockopt(2)
// SO_DOMAIN, SO_TYPE, SO_ACCEPTCONN; socket(7)) inside SyscallConn().Control,
// which leaves the descriptor's flags alone (File.Fd would make it blocking).
// A descriptor that is not a socket is not a control listener: false, nil.
func IsControlListener(c syscall.Conn) (bool, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return false, err
	}
	var domain, typ, listening int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN); serr != nil {
			serr = os.NewSyscallError("getsockopt SO_DOMAIN", serr)
			return
		}
		if typ, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE); serr != nil {
			serr = os.NewSyscallError("getsockopt SO_TYPE", serr)
			return
		}
		if listening, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ACCEPTCONN); serr != nil {
			serr = os.NewSyscallError("getsockopt SO_ACCEPTCONN", serr)
		}
	}); err != nil {
		return false, err
	}
	if errors.Is(serr, unix.ENOTSOCK) {
		return false, nil
	}
	if serr != nil {
		return false, serr
	}
	return domain == unix.AF_UNIX && typ == unix.SOCK_SEQPACKET && listening == 1, nil
}

// FileListener returns a listener on a duplicate of f, which must be a
// control listener (IsControlListener). f stays owned by the caller, who
// may close it at once; the caller owns the returned listener. The
// listener never removes its socket file on close: the file of an
// activated socket belongs to whoever created it (systemd).
func FileListener(f *os.File) (*net.UnixListener, error) {
	ln, err := net.FileListener(f) // duplicates with F_DUPFD_CLOEXEC
	if err != nil {
		return nil, fmt.Errorf("listener from %s: %w", f.Name(), err)
	}
	ul, ok := ln.(*net.UnixListener)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("listener from %s: a %T, not a Unix listener", f.Name(), ln)
	}
	ul.SetUnlinkOnClose(false)
	return ul, nil
}
