package fdstore

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/ctlsock"
	"github.com/fdholder/fdholder/internal/sockfd"
)

// HandoffEnv names the environment variable through which an upgrade
// passes its descriptors to the new binary: the number of a memfd that
// lists them, one "NUMBER NAME" line each (version line first), and each
// entry's metadata inline, one "meta NAME HEX" line each. The names are
// those of the store's layout (ControlName, SocketName, MetaName), so the
// new binary recovers them exactly as it recovers systemd's file
// descriptor store after a crash.
//
// An upgrade needs no descriptor per entry (issue 8: with a memfd per
// entry's metadata and a duplicate per socket, it failed above half the
// descriptor limit): the held sockets are passed under their own numbers,
// close-on-exec cleared just before execve(2), and the metadata is in the
// list.
const HandoffEnv = "FDHOLDER_HANDOFF_FD"

// handoffHeader is the first line of the hand-off list. Version 1 lists
// had a memfd per metadata and no meta lines; FromHandoff reads both.
const (
	handoffHeader   = "fdholder-handoff 2"
	handoffHeaderV1 = "fdholder-handoff 1"
)

// Handoff collects the descriptors an upgrade passes across execve(2). It
// owns the control sockets' duplicates (close-on-exec until Env) until
// Close; the entries' sockets are lent by the caller (AddEntry). It is not
// safe for concurrent use.
type Handoff struct {
	passed []Passed // owned: the control sockets' duplicates, then the list
	lent   []lentFD // the entries' sockets, owned by the caller
	metas  []Passed // the entries' metadata, inline (Data)
	socks  map[uint64]bool
	file   *SocketFile
}

// lentFD is a socket the caller lends to a Handoff, under its name in the
// list.
type lentFD struct {
	fd   *sockfd.FD
	name string
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

// AddControl adds a duplicate of the control listener ln's descriptor
// (sockfd.DupConn, which never sets the shared open file description
// blocking as File() would). AddControl borrows ln until it returns; the
// caller may close ln after that, the Handoff owns the duplicate.
func (h *Handoff) AddControl(ln *net.UnixListener) error {
	d, err := sockfd.DupConn(ln)
	if err != nil {
		return err
	}
	h.passed = append(h.passed, Passed{FD: d, Name: ControlName})
	return nil
}

// AddEntry adds an entry: its socket fd (once per socket) and its
// metadata under metaName. AddEntry borrows fd until Close, without
// duplicating it: fd stays owned by the caller, who must keep it open
// until then (Env clears its close-on-exec flag, Close sets it again).
func (h *Handoff) AddEntry(m Meta, fd *sockfd.FD, metaName string) error {
	ino, err := Inode(fd)
	if err != nil {
		return err
	}
	m.Inode = ino
	if !h.socks[ino] {
		h.lent = append(h.lent, lentFD{fd: fd, name: SocketName(ino)})
		h.socks[ino] = true
	}
	h.metas = append(h.metas, Passed{Name: metaName, Data: AppendMeta(nil, &m)})
	return nil
}

// Len returns the number of descriptors collected, lent ones included.
func (h *Handoff) Len() int { return len(h.passed) + len(h.lent) }

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
		fmt.Fprintf(&b, "%d %s\n", p.FD.Sysfd(), p.Name)
	}
	for _, l := range h.lent {
		fmt.Fprintf(&b, "%d %s\n", l.fd.Sysfd(), l.name)
	}
	for _, m := range h.metas {
		fmt.Fprintf(&b, "meta %s %s\n", m.Name, hex.EncodeToString(m.Data))
	}
	n, err := unix.MemfdCreate("fdholder-handoff", unix.MFD_CLOEXEC)
	if err != nil {
		return "", os.NewSyscallError("memfd_create", err)
	}
	list := sockfd.New(n)
	h.passed = append(h.passed, Passed{FD: list, Name: "handoff"})
	if _, err := unix.Write(list.Sysfd(), b.Bytes()); err != nil {
		return "", os.NewSyscallError("write hand-off list", err)
	}
	for _, p := range h.passed {
		if _, err := unix.FcntlInt(uintptr(p.FD.Sysfd()), unix.F_SETFD, 0); err != nil {
			return "", os.NewSyscallError("fcntl F_SETFD", err)
		}
	}
	for _, l := range h.lent {
		if _, err := unix.FcntlInt(uintptr(l.fd.Sysfd()), unix.F_SETFD, 0); err != nil {
			return "", os.NewSyscallError("fcntl F_SETFD", err)
		}
	}
	return HandoffEnv + "=" + strconv.Itoa(list.Sysfd()), nil
}

// Close closes every descriptor the Handoff owns and sets close-on-exec
// again on those it was lent. Closing again does nothing.
func (h *Handoff) Close() {
	for _, p := range h.passed {
		p.FD.Close()
	}
	for _, l := range h.lent {
		unix.CloseOnExec(l.fd.Sysfd())
	}
	h.passed, h.lent, h.metas = nil, nil, nil
}

// FromHandoff returns the descriptors an upgrade passed (HandoffEnv), and
// the control socket's file if the holder had created it, marks them
// close-on-exec, closes the list and unsets the variable. It returns none
// without the variable. The caller owns every descriptor returned (pass
// them to Sort). On an error FromHandoff closes every descriptor the list
// names, even after a wrong header or a bad or overlong line: they were
// passed to this process, and nobody else will close them.
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
	r := bufio.NewReaderSize(f, 4096)
	var out []Passed
	var file *SocketFile
	taken := map[int]bool{lfd: true}
	first := true
	var bad error
	for {
		line, long, err := readLine(r, maxHandoffLine)
		if err == io.EOF {
			break
		}
		if err != nil {
			closeAll(out)
			return nil, nil, fmt.Errorf("hand-off list: %w", err)
		}
		if long {
			// Skipped, but the lines after it are read: every descriptor
			// listed must be closed.
			bad = cmp.Or(bad, fmt.Errorf("a line longer than %d bytes", maxHandoffLine))
			continue
		}
		if first {
			first = false
			if line == handoffHeader || line == handoffHeaderV1 {
				continue
			}
			// A list of another version, or none: its descriptors are
			// still closed, as far as it lists them in the "NUMBER NAME"
			// form every version has used, this first line included.
			bad = fmt.Errorf("header %q, want %q", line, handoffHeader)
		}
		if rest, ok := strings.CutPrefix(line, "meta "); ok {
			name, data, _ := strings.Cut(rest, " ")
			b, err := hex.DecodeString(data)
			if err != nil || name == "" {
				bad = cmp.Or(bad, fmt.Errorf("bad line %q", line))
				continue
			}
			out = append(out, Passed{Name: name, Data: b})
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
				bad = cmp.Or(bad, fmt.Errorf("bad line %q", line))
				continue
			}
			file = &sf
			continue
		}
		num, name, ok := strings.Cut(line, " ")
		fd, err := strconv.Atoi(num)
		// Standard input, output and error, the list itself and a number
		// listed twice are never taken: one owner per descriptor.
		if !ok || err != nil || fd < listenFDsStart || taken[fd] {
			bad = cmp.Or(bad, fmt.Errorf("bad line %q", line))
			continue
		}
		taken[fd] = true
		unix.CloseOnExec(fd)
		out = append(out, Passed{FD: sockfd.New(fd), Name: name})
	}
	if bad != nil {
		closeAll(out)
		return nil, nil, fmt.Errorf("hand-off list: %w", bad)
	}
	return out, file, nil
}

// maxHandoffLine bounds a line of the hand-off list: a meta line holds a
// name and the hex of up to MaxMetaSize bytes.
const maxHandoffLine = 2*MaxMetaSize + 4096

// readLine returns the next line of r without its newline, or long for a
// line over limit bytes (then skipped to its end, so that the next call
// reads the line after it), or io.EOF after the last line.
func readLine(r *bufio.Reader, limit int) (line string, long bool, err error) {
	var b []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if !long {
			if len(b)+len(chunk) > limit+1 { // +1: the newline
				long, b = true, nil
			} else {
				b = append(b, chunk...)
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && (long || len(b) > 0):
			return string(b), long, nil // a last line without a newline
		case err != nil:
			return "", false, err
		}
		if long {
			return "", true, nil
		}
		return string(b[:len(b)-1]), false, nil
	}
}

func closeAll(ps []Passed) {
	for _, p := range ps {
		p.FD.Close()
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
		d, err := p.FD.Dup()
		var ln *net.UnixListener
		if err == nil {
			f := d.File(ControlName)
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
