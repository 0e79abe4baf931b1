package main

import (
	"fmt"
	"io"
	"os"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/ctlsock"
	"github.com/fdholder/fdholder/internal/policy"
)

// check is --check: it validates everything a start with cfg would,
// without binding or serving: the flags (already parsed), the policy file
// (with FILE:LINE from the policy package), the socket group, and the
// socket path and its directory (ctlsock.CheckPath). It prints
// "fdholderd: ok" and returns 0, or prints every problem on a line of its
// own and returns 1. Warnings (an empty policy) go to stderr either way.
// An upgrade runs the new binary so, with the running holder's flags.
func check(cfg config, stdout, stderr io.Writer) int {
	var problems []string
	if cfg.policy != "" {
		// The same uid as the running holder's (loadPolicy): its real one.
		uid := os.Getuid()
		p, err := policy.Load(cfg.policy, uint32(uid))
		switch {
		case err != nil:
			problems = append(problems, err.Error())
		case len(p.Rules()) == 0:
			fmt.Fprintf(stderr, "fdholderd: warning: %s\n", emptyPolicy(cfg.policy, uid))
		case len(p.Rules()) == 1:
			fmt.Fprintf(stdout, "fdholderd: policy %s: 1 rule\n", cfg.policy)
		default:
			fmt.Fprintf(stdout, "fdholderd: policy %s: %d rules\n", cfg.policy, len(p.Rules()))
		}
	}
	if _, err := socketOptions(cfg); err != nil {
		problems = append(problems, err.Error())
	}
	if os.Getenv("LISTEN_FDS") == "" {
		// Under socket activation no socket is bound: systemd made it.
		path := cfg.socket
		if path == "" {
			path = fdholder.SocketPath()
		}
		// The effective uid, as ctlsock.Listen checks the directory.
		if err := ctlsock.CheckPath(path, os.Geteuid()); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(stderr, "fdholderd: check: %s\n", p)
		}
		return 1
	}
	io.WriteString(stdout, "fdholderd: ok\n")
	return 0
}
