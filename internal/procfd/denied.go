package procfd

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// capSysPtrace is CAP_SYS_PTRACE's bit in the capability sets
// (capabilities(7), linux/capability.h).
const capSysPtrace = 19

// yamaScopePath is where Yama publishes its ptrace_scope, absent when Yama
// is not active (Documentation/admin-guide/LSM/Yama.rst).
const yamaScopePath = "/proc/sys/kernel/yama/ptrace_scope"

// denied explains why the kernel refused op on the process: pidfd_getfd(2)
// needs PTRACE_MODE_ATTACH_REALCREDS and /proc/PID/fd PTRACE_MODE_READ
// (ptrace(2), "Ptrace access mode checking"). Both pass for a caller with
// CAP_SYS_PTRACE; otherwise the caller's uids and gids must be the
// process's real, effective and saved ones, and the process dumpable. Yama
// then restricts the attach mode further. The error wraps ErrDenied and
// err, and states the facts of this case: who runs as whom, whether the
// process is dumpable, and the Yama setting in force.
func (p *Process) denied(op string, err error) error {
	var facts []string
	uids, gids := procIDs(p.PID)
	me := fmt.Sprintf("this process runs as uid %d gid %d", os.Getuid(), os.Getgid())
	if hasCap(capSysPtrace) {
		me += " with CAP_SYS_PTRACE (in its own user namespace)"
	} else {
		me += " without CAP_SYS_PTRACE"
	}
	if uids != "" {
		facts = append(facts, fmt.Sprintf("%v runs as uid %s gid %s; %s", p, uids, gids, me))
	} else {
		facts = append(facts, me)
	}
	if notDumpable(p.PID, uids) {
		facts = append(facts, fmt.Sprintf("%v is not dumpable (/proc/%d/status is owned by root: it changed credentials, as a server dropping root does, or called prctl(PR_SET_DUMPABLE, 0)), so only CAP_SYS_PTRACE will do", p, p.PID))
	}
	facts = append(facts, yamaScope())
	return fmt.Errorf("%v: %s: %w: %w; copying another process's descriptors needs ptrace attach rights (pidfd_getfd(2), ptrace(2)): "+
		"run as the process's user (all its uids and gids yours) with the process dumpable, or with CAP_SYS_PTRACE (as root); %s",
		p, op, ErrDenied, err, strings.Join(facts, "; "))
}

// procIDs returns the real, effective, saved and filesystem uids and gids of
// pid as /proc/PID/status shows them ("0" when all four are the same, else
// "1000/0/0/0"), or "" when they cannot be read.
func procIDs(pid int) (uids, gids string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok || (key != "Uid" && key != "Gid") {
			continue
		}
		ids := strings.Fields(val)
		s := strings.Join(ids, "/")
		if len(slices.Compact(slices.Clone(ids))) == 1 {
			s = ids[0]
		}
		if key == "Uid" {
			uids = s
		} else {
			gids = s
		}
	}
	return uids, gids
}

// notDumpable reports whether the process is known not to be dumpable: its
// /proc/PID files are owned by root although the process does not run as
// root, which proc(5) says happens exactly when it is not dumpable. (The
// /proc/PID directory itself may keep the process's uid; its files follow.)
func notDumpable(pid int, uids string) bool {
	if uids == "" || uids == "0" {
		return false
	}
	fi, err := os.Stat(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == 0
}

// hasCap reports whether this process has capability bit in its effective
// set (CapEff in /proc/self/status, proc(5)).
func hasCap(bit uint) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<bit) != 0
		}
	}
	return false
}

// yamaScope reads kernel.yama.ptrace_scope and says what its value means
// for attaching (Documentation/admin-guide/LSM/Yama.rst).
func yamaScope() string {
	b, err := os.ReadFile(yamaScopePath)
	if err != nil {
		return "kernel.yama.ptrace_scope is absent (Yama is not active): only the rules above apply"
	}
	v := strings.TrimSpace(string(b))
	switch v {
	case "0":
		return "kernel.yama.ptrace_scope is 0 (classic ptrace permissions): only the rules above apply"
	case "1":
		return "kernel.yama.ptrace_scope is 1 (restricted): without CAP_SYS_PTRACE only an ancestor of the process, or one it named with prctl(PR_SET_PTRACER), may attach; run as root, or set it to 0 (sysctl kernel.yama.ptrace_scope=0)"
	case "2":
		return "kernel.yama.ptrace_scope is 2 (admin-only): only with CAP_SYS_PTRACE, whoever runs the process"
	case "3":
		return "kernel.yama.ptrace_scope is 3 (no attach): no process may attach, not even root, until the next boot"
	}
	return "kernel.yama.ptrace_scope is " + v
}
