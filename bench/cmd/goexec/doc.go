// Command goexec is the smallest Go program that becomes another: it
// executes /bin/true at once. The suite times it as the floor of any Go
// exec wrapper (the runtime's start, then an execve(2) from a
// multi-threaded process), to compare `fdclient exec` against.
//
// With an argument it tests what fdclient exec's descriptor set-up costs
// (docs/benchmarks.md, the whole-process section):
//
//	goexec lock     runtime.LockOSThread first (it starts the runtime's
//	                template thread: one more thread for execve to end)
//	goexec unshare  LockOSThread and unshare(CLONE_FILES), as fdclient does
//	goexec init     unshare(CLONE_FILES) and exec from an init function,
//	                where the main goroutine is still wired to the main
//	                thread without LockOSThread
package main
