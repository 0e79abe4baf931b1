package fdstore

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/ctlsock"
)

// HandoffEnv names the environment variable through which an upgrade
// passes its descriptors to the new binary: the number of a memfd that
// lists them, one "NUMBER NAME" line each (version line first). The
// descriptors are those of the store's layout (ControlName, SocketName,
// MetaName), so the new binary recovers them exactly as it recovers
// systemd's file descriptor store after a crash.
const HandoffEnv = "FDHOLDER_HANDOFF_FD"

// handoffHeader is the first line of the hand-off list.
const handoffHeader = "fdholder-handoff 1"

// Handoff collects the descriptors an upgrade passes across execve(2). It
// owns every descriptor it collects (duplicates, close-on-exec until Env)
// until Close. It is not safe for concurrent use.
type Handoff struct {
	passed []Passed
	socks  map[uint64]bool
	buf    []byte
	file   *SocketFile
}

// SocketFile names the control socket's file when the holder created it
// itself (not socket activation), so that the new binary removes it on
// exit as the old one would have: its path, device and inode.
type SocketFile struct {
	Path     string
	Dev, Ino uint64
}

// SetSocketFile records the control socket's file.
func (h *Handoff) SetSocketFile(f SocketFile) { h.file = &f }

// NewHandoff returns an empty Handoff.
func NewHandoff() *Handoff { return &Handoff{socks: make(map[uint64]bool)} }

// AddControl adds a duplicate of the control listener fd, which stays
// owned by the caller.
func (h *Handoff) AddControl(fd int) error {
	d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", err)
	}
	h.passed = append(h.passed, Passed{FD: d, Name: ControlName})
	return nil
}

// AddEntry adds an entry: a duplicate of its socket fd (once per socket;
// fd stays owned by the caller) and its metadata under metaName.
func (h *Handoff) AddEntry(m Meta, fd int, metaName string) error {
	ino, err := Inode(fd)
	if err != nil {
		return err
	}
	m.Inode = ino
	if !h.socks[ino] {
		d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", err)
		}
		h.passed = append(h.passed, Passed{FD: d, Name: SocketName(ino)})
		h.socks[ino] = true
	}
	mfd, err := metaFile(&m, &h.buf)
	if err != nil {
		return err
	}
	h.passed = append(h.passed, Passed{FD: mfd, Name: metaName})
	return nil
}

// Len returns the number of descriptors collected.
func (h *Handoff) Len() int { return len(h.passed) }

// Env writes the list of descriptors to a memfd, clears close-on-exec on
// it and on every descriptor collected, and returns the environment
// assignment that names it. After a failed exec, Close undoes it all.
func (h *Handoff) Env() (string, error) {
	var b bytes.Buffer
	b.WriteString(handoffHeader + "\n")
	if h.file != nil {
		// The path goes last: it may contain spaces.
		fmt.Fprintf(&b, "socket-file %d %d %s\n", h.file.Dev, h.file.Ino, h.file.Path)
	}
	for _, p := range h.passed {
		fmt.Fprintf(&b, "%d %s\n", p.FD, p.Name)
	}
	fd, err := unix.MemfdCreate("fdholder-handoff", unix.MFD_CLOEXEC)
	if err != nil {
		return "", os.NewSyscallError("memfd_create", err)
	}
	h.passed = append(h.passed, Passed{FD: fd, Name: "handoff"})
	if _, err := unix.Write(fd, b.Bytes()); err != nil {
		return "", os.NewSyscallError("write hand-off list", err)
	}
	for _, p := range h.passed {
		if _, err := unix.FcntlInt(uintptr(p.FD), unix.F_SETFD, 0); err != nil {
			return "", os.NewSyscallError("fcntl F_SETFD", err)
		}
	}
	return HandoffEnv + "=" + strconv.Itoa(fd), nil
}

// Close closes every descriptor collected.
func (h *Handoff) Close() {
	for _, p := range h.passed {
		closeFD(p.FD)
	}
	h.passed = nil
}

// FromHandoff returns the descriptors an upgrade passed (HandoffEnv), and
// the control socket's file if the holder had created it, marks them
// close-on-exec, closes the list and unsets the variable. It returns none
// without the variable. The caller owns every descriptor returned (pass
// them to Sort).
func FromHandoff() ([]Passed, *SocketFile, error) {
	v, ok := os.LookupEnv(HandoffEnv)
	if !ok {
		return nil, nil, nil
	}
	os.Unsetenv(HandoffEnv)
	lfd, err := strconv.Atoi(v)
	if err != nil || lfd < 0 {
		return nil, nil, fmt.Errorf("%s=%q: not a descriptor number", HandoffEnv, v)
	}
	unix.CloseOnExec(lfd)
	f := os.NewFile(uintptr(lfd), "fdholder-handoff")
	defer f.Close()
	if _, err := f.Seek(0, 0); err != nil {
		return nil, nil, fmt.Errorf("hand-off list: %w", err)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 4096)
	var out []Passed
	var file *SocketFile
	first := true
	var bad error
	for sc.Scan() {
		line := sc.Text()
		if first {
			if line != handoffHeader {
				return nil, nil, fmt.Errorf("hand-off list: header %q, want %q", line, handoffHeader)
			}
			first = false
			continue
		}
		if rest, ok := strings.CutPrefix(line, "socket-file "); ok {
			var sf SocketFile
			f := strings.SplitN(rest, " ", 3)
			if len(f) == 3 {
				sf.Path = f[2]
				sf.Dev, err = strconv.ParseUint(f[0], 10, 64)
				if err == nil {
					sf.Ino, err = strconv.ParseUint(f[1], 10, 64)
				}
			}
			if len(f) != 3 || err != nil || sf.Path == "" {
				bad = fmt.Errorf("bad line %q", line)
				continue
			}
			file = &sf
			continue
		}
		num, name, ok := strings.Cut(line, " ")
		fd, err := strconv.Atoi(num)
		if !ok || err != nil || fd < 0 {
			// Keep reading: every descriptor listed must be closed.
			bad = fmt.Errorf("bad line %q", line)
			continue
		}
		unix.CloseOnExec(fd)
		out = append(out, Passed{FD: fd, Name: name})
	}
	if err := cmp.Or(sc.Err(), bad); err != nil {
		closeAll(out)
		return nil, nil, fmt.Errorf("hand-off list: %w", err)
	}
	return out, file, nil
}

func closeAll(ps []Passed) {
	for _, p := range ps {
		closeFD(p.FD)
	}
}

// Listeners returns a new listener on each control socket collected, for a
// holder to serve again after a failed exec. The caller owns them; h keeps
// its own descriptors.
func (h *Handoff) Listeners() ([]*net.UnixListener, error) {
	var lns []*net.UnixListener
	for _, p := range h.passed {
		if p.Name != ControlName {
			continue
		}
		d, err := unix.FcntlInt(uintptr(p.FD), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			err = os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", err)
		}
		var ln *net.UnixListener
		if err == nil {
			f := os.NewFile(uintptr(d), ControlName)
			ln, err = ctlsock.FileListener(f)
			f.Close()
		}
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			return nil, err
		}
		lns = append(lns, ln)
	}
	return lns, nil
}
