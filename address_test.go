package fdholder_test

import (
	"testing"

	"github.com/fdholder/fdholder"
)

func TestAddressMatches(t *testing.T) {
	tests := []struct {
		name                   string
		network, address, held string
		want                   bool
	}{
		{"same", "tcp", "127.0.0.1:8080", "127.0.0.1:8080", true},
		{"another port", "tcp", "127.0.0.1:8081", "127.0.0.1:8080", false},
		{"another IP", "tcp", "127.0.0.2:8080", "127.0.0.1:8080", false},
		{"port 0 takes any", "tcp", "127.0.0.1:0", "127.0.0.1:41234", true},
		{"an empty port matches nothing", "tcp", "127.0.0.1:", "127.0.0.1:41234", false},
		{"an empty port is not port 0", "tcp", "127.0.0.1:", "127.0.0.1:0", false},
		{"no host is the wildcard", "tcp", ":8080", "[::]:8080", true},
		{"no host is not loopback", "tcp", ":8080", "127.0.0.1:8080", false},
		{"both wildcards", "tcp", "0.0.0.0:8080", "[::]:8080", true},
		{"a service name", "tcp", "127.0.0.1:http", "127.0.0.1:80", true},
		{"a host name", "tcp", "localhost:8080", "127.0.0.1:8080", true},
		{"IPv6", "tcp6", "[::1]:8080", "[::1]:8080", true},
		{"a mapped IPv4", "tcp", "[::ffff:127.0.0.1]:8080", "127.0.0.1:8080", true},
		{"a unix path", "unix", "/run/a.sock", "/run/a.sock", true},
		{"another unix path", "unix", "/run/b.sock", "/run/a.sock", false},
		{"an abstract name", "unixpacket", "@a", "@a", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fdholder.AddressMatches(t.Context(), tt.network, tt.address, tt.held); got != tt.want {
				t.Errorf("AddressMatches(%q, %q, %q) = %v, want %v", tt.network, tt.address, tt.held, got, tt.want)
			}
		})
	}
}
