package main

import (
	"os"
	"runtime"
	"syscall"
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		if err := syscall.Unshare(syscall.CLONE_FILES); err != nil {
			panic(err)
		}
		execTrue()
	}
}

func main() {
	mode := ""
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	switch mode {
	case "":
	case "lock":
		runtime.LockOSThread()
	case "unshare":
		runtime.LockOSThread()
		if err := syscall.Unshare(syscall.CLONE_FILES); err != nil {
			panic(err)
		}
	default:
		os.Stderr.WriteString("usage: goexec [lock|unshare|init]\n")
		os.Exit(2)
	}
	execTrue()
}

func execTrue() {
	err := syscall.Exec("/bin/true", []string{"/bin/true"}, os.Environ())
	panic(err)
}
