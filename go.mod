module github.com/fdholder/fdholder

go 1.26.8

require (
	github.com/coreos/go-systemd/v22 v22.7.0
	github.com/google/btree v1.1.3
	go.uber.org/zap v1.28.0
	golang.org/x/sys v0.49.0
)

require go.uber.org/multierr v1.10.0 // indirect
