package ctlsock

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/sockfd"
)

// ErrUntrusted is wrapped by the errors of CheckDir, TrustedHolders and
// CheckPeer: a socket directory another user could have created or can
// change, or a holder that runs as a uid the client does not trust.
var ErrUntrusted = errors.New("untrusted socket directory or holder")

// maxLinks bounds the symbolic links followed on one socket path, as the
// kernel's own limit does (path_resolution(7): 40).
const maxLinks = 40

// CheckDir checks the directory of a holder's socket for a holder running
// as uid, before it binds there. The directory must be owned by root or
// uid and writable by nobody else (no group or other write bit, sticky or
// not): whoever can write to it can put a socket of their own at the path,
// or rename the holder's away. Every directory above it must be owned by
// root or uid too, and writable by others only with the sticky bit (as
// /tmp is), so that nobody can rename the socket directory itself.
// Symbolic links on the way are followed, and must be owned by root or uid.
//
// Without this a user could create $TMPDIR/fdholder-UID before its owner
// does and run a holder of theirs in it, which then receives the owner's
// listeners.
func CheckDir(dir string, uid int) error {
	_, err := checkChain(dir, uid, false, true, 0)
	return err
}

// CheckPath checks, without creating or binding anything, what Listen
// would check of path for a holder running as uid (fdholderd --check):
// its length; its directory (CheckDir), or if that does not exist yet,
// that the nearest directory above it that does is one Listen may create
// it in (owned by root or uid, writable by others only with the sticky
// bit, and writable by this process); and that whatever is at path is a
// socket. A holder live on path is not looked for.
func CheckPath(path string, uid int) error {
	if path == "" {
		return errors.New("empty socket path")
	}
	if len(path) > MaxPathLen {
		return fmt.Errorf("socket %s: the path is %d bytes; a Unix socket path is at most %d (unix(7))", path, len(path), MaxPathLen)
	}
	dir := filepath.Dir(path)
	_, err := os.Stat(dir)
	if err == nil {
		if err := CheckDir(dir, uid); err != nil {
			return fmt.Errorf("socket %s: %w", path, err)
		}
		if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() != fs.ModeSocket {
			return fmt.Errorf("socket %s: the path exists and is %w (%s); fdholderd would refuse to replace it", path, sockfd.ErrNotSocket, sockfd.DescribeType(fi.Mode()))
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("socket %s: %w", path, err)
	}
	parent := filepath.Dir(dir)
	for {
		if _, err := os.Stat(parent); err == nil || parent == filepath.Dir(parent) {
			break
		}
		parent = filepath.Dir(parent)
	}
	if _, err := checkChain(parent, uid, false, false, 0); err != nil {
		return fmt.Errorf("socket %s: %w", path, err)
	}
	if err := unix.Access(parent, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Errorf("socket %s: cannot create %s in %s: %w", path, dir, parent, os.NewSyscallError("access", err))
	}
	return nil
}

// TrustedHolders checks the directory of the socket path for a client
// running as uid, and returns the uids a holder serving there may run as:
// root, uid, and the owner of the socket directory when that is another
// user and the directory sits in one only root can write (as systemd's
// RuntimeDirectory= makes /run/fdholder for a holder with User=), since
// then root gave it to that user. Otherwise the rules are CheckDir's. A
// path in a directory that does not exist is not refused here: the dial
// fails on its own. An abstract socket (@name) has no directory to check.
func TrustedHolders(path string, uid int) ([]int, error) {
	trusted, _, err := trustedHolders(path, uid)
	return trusted, err
}

// trustedHolders is TrustedHolders, and the owner of the socket directory
// it checked: -1 when there was none to check.
func trustedHolders(path string, uid int) (trusted []int, owner int, err error) {
	trusted = []int{0}
	if uid != 0 {
		trusted = append(trusted, uid)
	}
	if strings.HasPrefix(path, "@") {
		return trusted, -1, nil
	}
	owner, err = checkChain(filepath.Dir(path), uid, true, true, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return trusted, -1, nil
	}
	if err != nil {
		return nil, -1, err
	}
	if !slices.Contains(trusted, owner) {
		trusted = append(trusted, owner)
	}
	return trusted, owner, nil
}

// CheckPeer returns nil if peerUID, the uid of the holder that answered a
// connection to path, is one of trusted (from TrustedHolders), and
// otherwise an error saying so: a client must not hand its listeners to a
// holder some other user runs. On a client's end SO_PEERCRED gives the
// credentials of the process that called listen(2) (unix(7)), which is
// the holder itself, or whoever bound the socket for it (systemd).
func CheckPeer(path string, peerUID int, trusted []int) error {
	if slices.Contains(trusted, peerUID) {
		return nil
	}
	names := make([]string, 0, len(trusted))
	for _, u := range trusted {
		if u == 0 {
			names = append(names, "root")
		} else {
			names = append(names, who(u))
		}
	}
	return fmt.Errorf("%w: the holder at %s runs as %s, not as %s: refusing to use it, another user may be intercepting your sockets; "+
		"point --socket or $FDHOLDER_SOCKET at the holder you mean", ErrUntrusted, path, who(peerUID), strings.Join(names, " or "))
}

// checkChain checks dir and the directories above it (see CheckDir) and
// returns the owner of dir. forClient allows a socket directory owned by
// another user inside a directory only root can write (see
// TrustedHolders). socketDir says dir is the socket's directory, which
// others may not write to even with the sticky bit.
func checkChain(dir string, uid int, forClient, socketDir bool, links int) (owner int, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return 0, err
	}
	cur := "/"
	parentRootOnly := false // cur's parent is owned by root and writable by nobody else
	rest := strings.Split(strings.TrimPrefix(abs, "/"), "/")
	if abs == "/" {
		rest = nil
	}
	for i := -1; i < len(rest); i++ {
		if i >= 0 {
			if rest[i] == "" {
				continue
			}
			cur = filepath.Join(cur, rest[i])
		}
		last := i == len(rest)-1 && socketDir
		fi, err := os.Lstat(cur)
		if err != nil {
			return 0, err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return 0, fmt.Errorf("stat %s: no owner", cur)
		}
		fowner := int(st.Uid)
		if fi.Mode()&fs.ModeSymlink != 0 {
			if fowner != 0 && fowner != uid {
				return 0, fmt.Errorf("%w: %s, on the way to the socket directory %s, is a symbolic link owned by %s, not by %s: its owner can point it elsewhere; use a path without it",
					ErrUntrusted, cur, abs, who(fowner), trustedNames(uid))
			}
			if links >= maxLinks {
				return 0, fmt.Errorf("%s: too many levels of symbolic links", abs)
			}
			target, err := os.Readlink(cur)
			if err != nil {
				return 0, err
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(cur), target)
			}
			return checkChain(filepath.Join(append([]string{target}, rest[i+1:]...)...), uid, forClient, socketDir, links+1)
		}
		if !fi.IsDir() {
			return 0, fmt.Errorf("socket directory %s: %s is not a directory", abs, cur)
		}
		perm := fi.Mode().Perm()
		what := cur + ", above the socket directory,"
		if last {
			what = "socket directory " + cur
		}
		if fowner != 0 && fowner != uid && !(last && forClient && parentRootOnly) {
			return 0, fmt.Errorf("%w: %s is owned by %s, not by %s: another user may have created it to intercept the sockets; "+
				"remove it (as root or its owner), or use a socket path in a directory you own (--socket or $FDHOLDER_SOCKET)",
				ErrUntrusted, what, who(fowner), trustedNames(uid))
		}
		if perm&0o022 != 0 && (last || fi.Mode()&fs.ModeSticky == 0) {
			why := "anyone could put a socket of their own at the path or move the holder's away"
			fix := "chmod go-w " + cur
			if !last {
				why = "anyone could rename the directories below it"
				fix += " (or chmod +t " + cur + ")"
			}
			return 0, fmt.Errorf("%w: %s is writable by others (mode %s): %s; run '%s', or use a socket path in a directory only you can write (--socket or $FDHOLDER_SOCKET)",
				ErrUntrusted, what, modeString(fi.Mode()), why, fix)
		}
		parentRootOnly = fowner == 0 && perm&0o022 == 0
		owner = fowner
	}
	return owner, nil
}

// modeString is a directory's mode in octal with its sticky bit, as
// chmod(1) takes it: 1777, 0755.
func modeString(m fs.FileMode) string {
	n := uint32(m.Perm())
	if m&fs.ModeSticky != 0 {
		n |= 0o1000
	}
	return fmt.Sprintf("%04o", n)
}

// trustedNames names root and uid for a message: "root", or "root or uid
// 1000 (alice)".
func trustedNames(uid int) string {
	if uid == 0 {
		return "root"
	}
	return "root or " + who(uid)
}

// who names a uid for a message: "uid 65534 (nobody)", or "uid 4000" when
// the user database does not know it.
func who(uid int) string {
	s := "uid " + strconv.Itoa(uid)
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		s += " (" + u.Username + ")"
	}
	return s
}

// trustTTL is how long TrustedHoldersCached reuses a verdict, and
// trustCacheMax how many paths it remembers. See docs/security.md for why
// reusing one is safe, and why only for this long.
const (
	trustTTL      = time.Second
	trustCacheMax = 16
)

type trustKey struct {
	path string
	uid  int
}

type trustVerdict struct {
	trusted []int
	until   time.Time
}

// trustNow is the clock of TrustedHoldersCached; tests replace it.
var trustNow = time.Now

// trustCache holds TrustedHoldersCached's verdicts, process-wide: Clients
// come and go with each Dial, the directories they check do not.
var trustCache struct {
	sync.Mutex
	m map[trustKey]trustVerdict
}

// TrustedHoldersCached is TrustedHolders, reusing for up to trustTTL the
// verdict on an absolute path whose directory existed and passed. A
// failure, a relative path (whose directory depends on the working
// directory) and a path whose directory did not exist are never reused:
// they are checked again at every call. The returned slice is shared: the
// caller must not modify it.
//
// A verdict can be reused because only a user it trusts could have made
// it wrong since: every directory it checked is owned by root or a trusted
// uid and writable by no one else (sticky directories' entries are renamed
// only by their owners), so nobody else can loosen, rename or replace
// them. The holder's SO_PEERCRED is still checked on every connection
// (CheckPeer).
func TrustedHoldersCached(path string, uid int) ([]int, error) {
	if !filepath.IsAbs(path) {
		return TrustedHolders(path, uid)
	}
	key := trustKey{path, uid}
	now := trustNow()
	trustCache.Lock()
	v, ok := trustCache.m[key]
	trustCache.Unlock()
	if ok && now.Before(v.until) {
		return v.trusted, nil
	}
	trusted, owner, err := trustedHolders(path, uid)
	if err != nil || owner < 0 {
		return trusted, err
	}
	trustCache.Lock()
	if trustCache.m == nil || len(trustCache.m) >= trustCacheMax {
		trustCache.m = make(map[trustKey]trustVerdict) // a program dials one or two paths: start over
	}
	trustCache.m[key] = trustVerdict{trusted: trusted, until: now.Add(trustTTL)}
	trustCache.Unlock()
	return trusted, nil
}
