module github.com/fdholder/fdholder

go 1.25.0

require (
	github.com/coreos/go-systemd/v22 v22.7.0
	github.com/google/btree v1.1.3
	github.com/pelletier/go-toml/v2 v2.4.3
	go.uber.org/zap v1.28.0
	golang.org/x/sys v0.47.0
)

require go.uber.org/multierr v1.10.0 // indirect
