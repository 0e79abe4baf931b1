package main

import (
	"os"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder/internal/holder"
)

// raiseNoFile raises the RLIMIT_NOFILE soft limit to the hard limit
// (getrlimit(2)): every held socket is a descriptor, and the default soft
// limit (1024) is far too low for a holder. The Go runtime already does so
// at start since Go 1.19; doing it here makes it explicit and logged. It
// warns when the limit cannot fit the connections allowed plus the reserve.
func raiseNoFile(log *zap.Logger, limits holder.Limits) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		log.Warn("cannot read RLIMIT_NOFILE", zap.Error(os.NewSyscallError("getrlimit", err)))
		return
	}
	before := rl.Cur
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
			log.Warn("cannot raise RLIMIT_NOFILE", zap.Uint64("soft", before), zap.Uint64("hard", rl.Max),
				zap.Error(os.NewSyscallError("setrlimit", err)))
			rl.Cur = before
		}
	}
	log.Info("descriptor limit", zap.Uint64("soft_before", before), zap.Uint64("soft", rl.Cur), zap.Uint64("hard", rl.Max))
	l := limits
	if l.MaxConns > 0 && l.FDReserve > 0 && uint64(l.MaxConns+l.FDReserve) > rl.Cur {
		log.Warn("RLIMIT_NOFILE is lower than --max-conns plus --fd-reserve: stores will be refused before connections are",
			zap.Uint64("soft", rl.Cur), zap.Int("max_conns", l.MaxConns), zap.Int("fd_reserve", l.FDReserve))
	}
}
