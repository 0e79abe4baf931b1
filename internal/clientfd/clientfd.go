package clientfd

import (
	"context"

	"github.com/fdholder/fdholder/internal/sockfd"
)

// Get is Client.Get of the root package for client, a *fdholder.Client,
// returning the descriptor as an FD that the caller owns and must close.
// The root package sets it in its init; its errors are Client.Get's.
var Get func(ctx context.Context, client any, name string) (*sockfd.FD, error)
